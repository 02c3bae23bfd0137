//! What the reports count, decided with everything else and committed with the state:
//! feedback on a sent email (once per email), unsubscribes, orders credited to the last
//! email clicked (else opened) within the attribution window, and the store's orders.

use chrono::{DateTime, Duration, Utc};

use super::{enrollment_tag, Run};
use crate::domain::{BounceType, CustomerState, EmailFeedback, Event, Profile, SendRecord};
use crate::stats::{hundredths, Metric, StatCount, StatScope};

/// The profile's order history before the event was applied.
pub(super) struct Before {
    orders_count: u32,
    last_order_at: Option<DateTime<Utc>>,
    unsubscribed: bool,
}

impl Before {
    pub(super) fn of(profile: &Profile) -> Before {
        Before { orders_count: profile.orders_count, last_order_at: profile.last_order_at, unsubscribed: profile.unsubscribed || profile.complained }
    }
}

/// Whether feedback belongs to this send: by message id, else by the enrollment tag and
/// step, else (hand-written events) by flow, step and template.
fn belongs_to(email: &EmailFeedback, send: &SendRecord) -> bool {
    if let (Some(id), Some(sent)) = (&email.message_id, &send.message_id) {
        return id == sent;
    }
    if let Some(tag) = &email.enrollment {
        return *tag == enrollment_tag(&send.enrollment_id) && email.step.as_ref().is_none_or(|step| *step == send.step_id);
    }
    email.flow.as_ref().is_some_and(|f| *f == send.flow)
        && email.step.as_ref().is_none_or(|step| *step == send.step_id)
        && email.template.as_ref().is_none_or(|t| *t == send.template)
}

impl Run<'_> {
    pub(super) fn count_email(&mut self, send: &SendRecord, metric: Metric, value: i64) {
        self.stats.push(StatCount::new(send.at.date_naive(), StatScope::Email(send.stats_key()), metric, value));
    }

    fn count_store(&mut self, at: DateTime<Utc>, metric: Metric, value: i64) {
        self.stats.push(StatCount::new(at.date_naive(), StatScope::Store, metric, value));
    }

    /// Counts what the event means for the reports. Returns a note for its timeline line
    /// (which email an order was credited to).
    pub(super) fn measure_event(&mut self, state: &mut CustomerState, event: &Event, before: &Before) -> Option<String> {
        match event.event_type.as_str() {
            "email_delivered" | "email_opened" | "email_clicked" | "email_bounced" | "email_complained" => {
                self.record_feedback(state, event);
                None
            }
            "unsubscribed" if !before.unsubscribed => {
                // Credited to the email the opt-out came from when known, else the last marketing one.
                let from_email = event.email.as_ref().and_then(|email| state.recent_sends.iter().rposition(|s| belongs_to(email, s)));
                let index = from_email.or_else(|| state.recent_sends.iter().rposition(|s| s.marketing))?;
                let send = std::sync::Arc::clone(&state.recent_sends[index]);
                self.count_email(&send, Metric::Unsubscribed, 1);
                None
            }
            "order_placed" => {
                self.count_order(event, before);
                self.attribute(state, event)
            }
            _ => None,
        }
    }

    /// Marks the send the feedback belongs to (and its enrollment, for `enrollment.opened`),
    /// counting each of delivered, opened and clicked once per email.
    fn record_feedback(&mut self, state: &mut CustomerState, event: &Event) {
        let Some(email) = &event.email else { return };
        let Some(index) = state.recent_sends.iter().rposition(|s| belongs_to(email, s)) else { return };
        let at = event.occurred_at_utc();
        let send = std::sync::Arc::make_mut(&mut state.recent_sends[index]);
        let mut counts = Vec::new();
        let mut engaged = None;
        match event.event_type.as_str() {
            "email_delivered" if !send.delivered => {
                send.delivered = true;
                counts.push(Metric::Delivered);
            }
            "email_opened" => {
                if send.opened_at.is_none() {
                    send.opened_at = Some(at);
                    counts.push(Metric::Opened);
                }
                engaged = Some(false);
            }
            "email_clicked" => {
                // A click implies the email was opened (images may have been blocked).
                if send.opened_at.is_none() {
                    send.opened_at = Some(at);
                    counts.push(Metric::Opened);
                }
                if send.clicked_at.is_none() {
                    send.clicked_at = Some(at);
                    counts.push(Metric::Clicked);
                }
                engaged = Some(true);
            }
            "email_bounced" => counts.push(match email.bounce_type {
                Some(BounceType::Permanent) => Metric::BouncedPermanent,
                _ => Metric::BouncedTransient,
            }),
            "email_complained" => counts.push(Metric::Complained),
            _ => {}
        }
        let send = send.clone();
        for metric in counts {
            self.count_email(&send, metric, 1);
        }
        let Some(clicked) = engaged else { return };
        let Some(index) = state.enrollments.iter().position(|e| e.id == send.enrollment_id) else { return };
        let unmarked = |list: &[crate::domain::Name]| !list.contains(&send.step_id);
        let enrollment = &state.enrollments[index];
        if !unmarked(&enrollment.opened) && !(clicked && unmarked(&enrollment.clicked)) {
            return;
        }
        // Copied only now that it changes (it and the list are shared with the state as loaded).
        let enrollment = std::sync::Arc::make_mut(&mut state.enrollments.to_mut()[index]);
        if unmarked(&enrollment.opened) {
            enrollment.opened.push(send.step_id.clone());
        }
        if clicked && unmarked(&enrollment.clicked) {
            enrollment.clicked.push(send.step_id.clone());
        }
    }

    /// Last touch: the marketing email clicked last within the window before the order,
    /// else the one opened last, gets the conversion and the order's total.
    fn attribute(&mut self, state: &CustomerState, event: &Event) -> Option<String> {
        let order = event.order.as_ref()?;
        let at = event.occurred_at_utc();
        let window = self.flows.store.attribution_window;
        let last_touch = |touched: fn(&SendRecord) -> Option<DateTime<Utc>>| {
            state
                .recent_sends
                .iter()
                .filter(|s| s.marketing)
                .filter_map(|s| touched(s).filter(|t| *t <= at && at - *t <= window).map(|t| (t, s)))
                .max_by_key(|(t, _)| *t)
                .map(|(_, s)| std::sync::Arc::clone(s))
        };
        let send = last_touch(|s| s.clicked_at).or_else(|| last_touch(|s| s.opened_at))?;
        self.count_email(&send, Metric::Converted, 1);
        if let (Some(total), Some(currency)) = (order.total, &order.currency) {
            self.count_email(&send, Metric::Revenue(currency.to_string()), hundredths(total.0));
        }
        Some(format!("attributed:{}/{}", send.flow, send.step_id))
    }

    /// Orders, revenue, new and returning customers, gaps between orders, and the days a
    /// customer is active (each order extends it to `active_days` after the latest order).
    fn count_order(&mut self, event: &Event, before: &Before) {
        let Some(order) = &event.order else { return };
        let at = event.occurred_at_utc();
        self.count_store(at, Metric::Orders, 1);
        if let (Some(total), Some(currency)) = (order.total, &order.currency) {
            self.count_store(at, Metric::OrderRevenue(currency.to_string()), hundredths(total.0));
        }
        match before.orders_count {
            0 => self.count_store(at, Metric::NewCustomers, 1),
            1 => self.count_store(at, Metric::SecondOrders, 1),
            _ => {}
        }
        let active = Duration::days(i64::from(self.flows.store.active_days));
        match before.last_order_at {
            // Older than the latest order: the active period already runs past it.
            Some(previous) if at < previous => {}
            Some(previous) => {
                self.count_store(at, Metric::GapDays(u32::try_from((at - previous).num_days()).unwrap_or(u32::MAX)), 1);
                if at < previous + active {
                    // Still active: move the end of the active period.
                    self.count_store(previous + active, Metric::ActiveDelta, 1);
                } else {
                    self.count_store(at, Metric::ActiveDelta, 1);
                }
                self.count_store(at + active, Metric::ActiveDelta, -1);
            }
            None => {
                self.count_store(at, Metric::ActiveDelta, 1);
                self.count_store(at + active, Metric::ActiveDelta, -1);
            }
        }
    }
}
