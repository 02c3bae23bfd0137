//! `aftercare cost --orders N [--events FILE]`: what N orders cost on AWS, either for one
//! order through every default flow, or at the mix of a store's own event history.

use std::path::PathBuf;
use std::process::ExitCode;

use aftercare_core::cost::{measure, measure_each, one_order_journey, Usage, FEEDBACK, FEEDBACK_EVENTS_PER_EMAIL, INGEST, STEP};
use aftercare_core::flow::FlowSet;
use chrono::{DateTime, Duration, Utc};

#[derive(clap::Args)]
pub struct CostArgs {
    /// How many orders.
    #[arg(long, default_value_t = 1000)]
    orders: u64,
    /// A store's events (JSON lines, as for `simulate`): price N orders at this store's mix
    /// of customers, orders and flows instead of one order through every default flow.
    #[arg(long)]
    events: Option<PathBuf>,
    /// The flows folder.
    #[arg(long, default_value = "flows")]
    flows: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// What was measured, per order, and how to say so.
struct PerOrder {
    usage: Usage,
    basis: String,
    /// How the SES events reaching the feedback function were counted.
    feedback: String,
}

pub fn run(args: CostArgs) -> ExitCode {
    let flows = match FlowSet::load_dir(&args.flows) {
        Ok(flows) => flows,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {}/{e}", args.flows.display());
            }
            return ExitCode::from(1);
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return ExitCode::from(1) };
    let per_order = match &args.events {
        None => {
            let until = DateTime::parse_from_rfc3339("2027-12-25T00:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_else(|_| Utc::now());
            match runtime.block_on(measure(flows, &one_order_journey(), until, None)) {
                Ok(usage) => PerOrder {
                    usage,
                    basis: "each placed, shipped and delivered, through every default flow for 400 days".into(),
                    feedback: format!("{FEEDBACK_EVENTS_PER_EMAIL} per email, estimated"),
                },
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(1);
                }
            }
        }
        Some(path) => match runtime.block_on(measure_store(flows, path)) {
            Ok(per_order) => per_order,
            Err(crate::simulate::BadInput(message)) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        },
    };
    let bill = per_order.usage.scaled(args.orders as f64).bill();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bill).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let u = &bill.usage;
    println!("{} orders, {}", args.orders, per_order.basis);
    println!();
    println!("| what | count | USD |");
    println!("|---|---:|---:|");
    println!("| storefront events (ingest invocations) | {:.0} | |", u.ingest_invocations);
    println!("| scheduled steps run (step invocations = Scheduler invocations) | {:.0} | {:.4} |", u.step_invocations, bill.scheduler);
    println!("| SES events to the feedback function ({}) | {:.0} | |", per_order.feedback, u.feedback_invocations);
    println!(
        "| Lambda (arm64, 128 MB; {}/{}/{} ms billed, modelled) | {:.0} invocations | {:.4} |",
        INGEST.billed_ms(),
        STEP.billed_ms(),
        FEEDBACK.billed_ms(),
        u.ingest_invocations + u.step_invocations + u.feedback_invocations,
        bill.lambda
    );
    println!("| DynamoDB on-demand: {:.0} calls, {:.0} RRU, {:.0} WRU | | {:.4} |", u.dynamodb_calls, u.read_units, u.write_units, bill.dynamodb);
    println!("| Scheduler CreateSchedule / DeleteSchedule (no charge) | {:.0} / {:.0} | 0 |", u.scheduler_creates, u.scheduler_deletes);
    println!("| SES emails | {:.0} | {:.4} |", u.ses_sends, bill.ses);
    println!("| EventBridge `Email Sent` events | {:.0} | {:.4} |", u.eventbridge_events, bill.eventbridge);
    println!("| **total** | | **{:.4}** |", bill.total);
    ExitCode::SUCCESS
}

/// The whole store through the metered services, divided by its orders: what an order costs
/// with everything a store also does (registrations, abandoned carts, repeat buyers who get no
/// win-back, birthdays once a year however many orders).
async fn measure_store(flows: FlowSet, path: &PathBuf) -> Result<PerOrder, crate::simulate::BadInput> {
    use crate::simulate::BadInput;
    let events = crate::simulate::read_events(path)?;
    let (first, last) = match (events.first(), events.last()) {
        (Some(first), Some(last)) => (first.at, last.at),
        _ => return Err(BadInput(format!("--events: {} has no events", path.display()))),
    };
    let orders = events.iter().filter(|e| e.event.event_type.as_str() == "order_placed").count();
    if orders == 0 {
        return Err(BadInput(format!("--events: {} has no order_placed event; cost is counted per order", path.display())));
    }
    let model = crate::engagement::EngagementModel::new(1, crate::engagement::TYPICAL);
    let count = events.len();
    // Consumed: each event is freed once run, so the store's states grow into its memory.
    let usage = measure_each(flows, events.into_iter().map(|e| e.event), last + Duration::days(400), Some(Box::new(model))).await.map_err(|e| BadInput(format!("{e:#}")))?;
    let basis = format!(
        "at the mix of {}: {count} events, {orders} orders over {} days, then 400 days of flows; {:.2} emails per order",
        path.display(),
        (last - first).num_days() + 1,
        usage.ses_sends / orders as f64,
    );
    let feedback = format!("Email Sent plus a typical recipient model, seed 1: {:.2} per email, measured", usage.feedback_invocations / usage.ses_sends.max(1.0));
    Ok(PerOrder { usage: usage.scaled(1.0 / orders as f64), basis, feedback })
}
