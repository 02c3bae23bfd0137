//! `aftercare simulate`: FLOWS.md §4. The real engine and services on in-memory ports,
//! driven by a virtual clock: months of flows in milliseconds.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use aftercare_core::domain::{Event, JsonDoc, LineItem};
use aftercare_core::flow::FlowSet;
use aftercare_core::service::{SendReport, ServiceError};
use aftercare_core::simulation::Simulation;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// One event envelope per line.
    #[arg(long)]
    events: PathBuf,
    /// The flows folder.
    #[arg(long, default_value = "flows")]
    flows: PathBuf,
    /// Fire due steps up to this instant (RFC 3339); default: the last event + 400 days.
    #[arg(long)]
    until: Option<String>,
    /// Also print skipped sends with their reason.
    #[arg(long)]
    show_skipped: bool,
    /// Answer every simulated email with modelled recipient behaviour (deliveries, bounces,
    /// opens, clicks, complaints, unsubscribes), seeded; see `aftercare simulate --help`.
    #[arg(long)]
    engagement: bool,
    /// Seed of the engagement model.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// After the run, print the report (funnels, A/B, deliverability, retention) instead of
    /// the send lines; with --out, write it there and print the send lines as usual.
    #[arg(long)]
    report: bool,
    #[command(flatten)]
    output: crate::report::Output,
}

/// One output line, fields in the documented order.
#[derive(Serialize)]
struct Line<'a> {
    at: String,
    customer_id: &'a str,
    flow: &'a str,
    template: &'a str,
    locale: &'a str,
    category: &'a str,
    to: &'a str,
    subject: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// `line 3: customer.email: …`, without repeating a field the message already starts with.
fn field_message(line: usize, field: &str, message: &str) -> String {
    if message.starts_with(field) {
        format!("line {line}: {message}")
    } else {
        format!("line {line}: {field}: {message}")
    }
}

/// A problem that stops the run: exit code 2.
#[derive(Debug)]
pub(crate) struct BadInput(pub(crate) String);

pub fn run(args: SimulateArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(simulate(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(BadInput(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// One line of the events file, checked and parsed.
#[derive(Debug)]
pub(crate) struct InputEvent {
    pub line: usize,
    /// Parsed once, when the file is read: kept as text it was parsed again at its turn, a
    /// seventh of the run. An `Event` takes a little more memory than its text and far less
    /// than its JSON `Value` (BENCHMARKS.md, items 8 and 26). Boxed: the list of them all
    /// lives to the end of the run, and inline its 360-byte events stayed in it after they
    /// were run; boxed, each is freed at its turn and the states grow into its memory
    /// (BENCHMARKS.md, item 93).
    pub event: Box<Event>,
    pub at: DateTime<Utc>,
}

/// Every line's envelope, checked (a bad line stops the run before anything is printed), in
/// time order; ties keep file order.
pub(crate) fn read_events(path: &PathBuf) -> Result<Vec<InputEvent>, BadInput> {
    let file = std::fs::File::open(path).map_err(|e| BadInput(format!("cannot open {}: {e}", path.display())))?;
    // Sized once, from the file's length: growing the list step by step copied and
    // page-faulted it over again (~3 % of a simulation), and counting the lines first read the
    // file twice (~2 %). An envelope is rarely under 256 bytes (a registration is ~280), so
    // this is seldom short; a pipe (`--events <(…)`) has no length and grows the list.
    let estimate = file.metadata().ok().filter(|m| m.is_file()).map_or(0, |m| usize::try_from(m.len() / LEAST_LINE_BYTES).unwrap_or(0));
    let mut events = Vec::with_capacity(estimate);
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut bytes = Vec::new();
    let mut shared_items = SharedItems::default();
    for line in 1.. {
        bytes.clear();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(BadInput(format!("line {line}: cannot read: {e}"))),
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| BadInput(format!("line {line}: cannot read: stream did not contain valid UTF-8")))?;
        if text.trim().is_empty() {
            continue;
        }
        // A `JsonDoc`, not a `Value`: its strings borrow from the line, and the event is read
        // from it by the same rules (BENCHMARKS.md, item 40).
        let doc: JsonDoc = serde_json::from_str(text).map_err(|e| BadInput(format!("line {line}: $: not valid JSON: {e}")))?;
        let mut event = Event::parse_doc(&doc).map_err(|e| BadInput(field_message(line, &e.field, &e.message)))?;
        shared_items.share(&mut event);
        events.push(InputEvent { line, at: event.occurred_at_utc(), event: Box::new(event) });
    }
    events.sort_by_key(|e| e.at);
    Ok(events)
}

/// An order's lines, kept once for all its events: placed, shipped and delivered each carry
/// the same items, and the events wait in memory for the whole run (and in the enrollments
/// they start), so the copies were a third of the events' memory (BENCHMARKS.md, item 92).
#[derive(Default)]
struct SharedItems(rustc_hash::FxHashMap<String, std::sync::Arc<[LineItem]>>);

impl SharedItems {
    /// The order's items become the ones read before for that order when they are equal.
    fn share(&mut self, event: &mut Event) {
        let Some(order) = event.order.as_mut().filter(|o| !o.items.is_empty()) else { return };
        match self.0.get(&order.id) {
            Some(items) if **items == *order.items => order.items = items.clone(),
            _ => {
                self.0.insert(order.id.clone(), order.items.clone());
            }
        }
    }
}

/// The shortest line `read_events` sizes its list for.
const LEAST_LINE_BYTES: u64 = 256;

async fn simulate(args: &SimulateArgs) -> Result<(), BadInput> {
    let flows = FlowSet::load_dir(&args.flows).map_err(|errors| {
        BadInput(errors.iter().map(|e| format!("{}/{e}", args.flows.display())).collect::<Vec<_>>().join("\n"))
    })?;
    let events = read_events(&args.events)?;
    let until = match &args.until {
        Some(text) => DateTime::parse_from_rfc3339(text).map_err(|_| BadInput(format!("--until: {text:?} is not an RFC 3339 time")))?.with_timezone(&Utc),
        None => events.last().map_or_else(Utc::now, |e| e.at) + Duration::days(400),
    };
    let start = events.first().map_or(until, |e| e.at);
    // Counters are for the report alone.
    let simulation = if args.report { Simulation::new(flows, start) } else { Simulation::sends_only(flows, start) };
    let mut simulation = simulation.map_err(|e| BadInput(format!("{}: {e:#}", args.flows.display())))?;
    if args.engagement {
        simulation = simulation.with_recipients(Box::new(crate::engagement::EngagementModel::new(args.seed, crate::engagement::TYPICAL)));
    }
    let range = if args.report { Some(args.output.range(until.date_naive()).map_err(BadInput)?) } else { None };
    // With --report on standard output, the report replaces the send lines.
    let print_sends = !args.report || args.output.out.is_some();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // Consumed: each event is freed once run, and the states that grow meanwhile reuse its
    // memory (BENCHMARKS.md, item 31).
    let mut reports = Vec::new();
    for event in events {
        let number = event.line;
        reports.clear();
        match simulation.ingest_event_into(&event.event, &mut reports).await {
            Ok(()) if print_sends => print_reports(&reports, args.show_skipped, &mut out),
            Ok(()) => {}
            Err(ServiceError::Invalid { error, .. }) => return Err(BadInput(field_message(number, &error.field, &error.message))),
            Err(e) => return Err(BadInput(format!("line {number}: {e}"))),
        }
    }
    simulation
        .run_until_each(until, |reports| {
            if print_sends {
                print_reports(reports, args.show_skipped, &mut out);
            }
        })
        .await
        .map_err(|e| BadInput(e.to_string()))?;
    let _ = out.flush();
    drop(out);
    if let Some((from, to)) = range {
        let report = simulation.app.report(from, to).await.map_err(|e| BadInput(e.to_string()))?;
        args.output.write(&report).map_err(BadInput)?;
    }
    // The process ends here: freeing every customer's state one by one first would only take time.
    std::mem::forget(simulation);
    Ok(())
}

/// Generic over the writer: serde_json writes a line in a dozen small pieces, and through
/// `dyn Write` each was a call into the buffer instead of a copy.
fn print_reports(reports: &[SendReport], show_skipped: bool, out: &mut impl Write) {
    for r in reports {
        if r.status != "sent" && !show_skipped {
            continue;
        }
        let line = Line {
            at: r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            customer_id: &r.customer_id,
            flow: &r.flow,
            template: &r.template,
            locale: &r.locale,
            category: r.category,
            to: &r.to,
            subject: &r.subject,
            status: r.status,
            reason: r.reason.as_deref(),
        };
        // Straight into the buffered output: no string per line.
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            let _ = out.write_all(b"\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("aftercare-read-events-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn event(id: &str, at: &str) -> String {
        serde_json::json!({"id": id, "type": "customer_registered", "occurred_at": at, "customer": {"id": "c1", "email": "c1@example.jp"}}).to_string()
    }

    #[test]
    fn events_are_read_from_crlf_and_blank_lines_in_time_order_with_their_line_numbers() {
        let text = format!("{}\r\n\n   \n{}", event("e1", "2026-11-20T10:00:00+09:00"), event("e2", "2026-11-20T09:00:00+09:00"));
        let path = file_with("crlf", text.as_bytes());
        let events = read_events(&path).unwrap();
        std::fs::remove_file(path).ok();
        let read: Vec<_> = events.iter().map(|e| (e.event.id.as_str().to_owned(), e.line)).collect();
        assert_eq!(read, [("e2".to_owned(), 4), ("e1".to_owned(), 1)]);
    }

    #[test]
    fn events_from_a_pipe_are_read_once_and_all_of_them() {
        let path = std::env::temp_dir().join(format!("aftercare-read-events-{}-fifo", std::process::id()));
        std::fs::remove_file(&path).ok();
        let made = std::process::Command::new("mkfifo").arg(&path).status().expect("mkfifo runs");
        assert!(made.success());
        let text = format!("{}\n{}\n", event("e1", "2026-11-20T10:00:00+09:00"), event("e2", "2026-11-20T11:00:00+09:00"));
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || std::fs::write(path, text).unwrap())
        };
        // Read on a thread: opening the pipe a second time would wait for a writer forever.
        let (done, read) = std::sync::mpsc::channel();
        let reading = path.clone();
        std::thread::spawn(move || done.send(read_events(&reading).unwrap()));
        let events = read.recv_timeout(std::time::Duration::from_secs(20)).expect("the pipe is read once, to its end");
        writer.join().unwrap();
        std::fs::remove_file(path).ok();
        assert_eq!(events.iter().map(|e| e.event.id.as_str()).collect::<Vec<_>>(), ["e1", "e2"]);
    }

    #[test]
    fn an_orders_events_share_its_items_only_while_they_are_the_same() {
        let order = |id: &str, kind: &str, order: &str, skus: &[&str]| {
            let items: Vec<_> = skus.iter().map(|sku| serde_json::json!({"sku": sku, "quantity": 1})).collect();
            serde_json::json!({"id": id, "type": kind, "occurred_at": "2026-11-20T10:00:00+09:00", "customer": {"id": "c1", "email": "c1@example.jp"}, "order": {"id": order, "items": items}}).to_string()
        };
        let lines = [
            order("e1", "order_placed", "o1", &["A", "B"]),
            order("e2", "order_placed", "o2", &["A", "B"]),
            order("e3", "order_delivered", "o1", &["A", "B"]),
            order("e4", "order_delivered", "o1", &["A"]),
            order("e5", "order_cancelled", "o1", &["A"]),
        ];
        let path = file_with("shared-items", lines.join("\n").as_bytes());
        let events = read_events(&path).unwrap();
        std::fs::remove_file(path).ok();
        let items: Vec<_> = events.iter().map(|e| e.event.order.as_ref().unwrap().items.clone()).collect();
        let skus = |i: usize| items[i].iter().map(|item| item.sku.as_str()).collect::<Vec<_>>();
        assert_eq!([skus(0), skus(1), skus(2), skus(3), skus(4)], [vec!["A", "B"], vec!["A", "B"], vec!["A", "B"], vec!["A"], vec!["A"]], "every event keeps its own lines");
        assert!(std::sync::Arc::ptr_eq(&items[0], &items[2]), "the same order's equal lines are kept once");
        assert!(!std::sync::Arc::ptr_eq(&items[0], &items[1]), "another order's are its own");
        assert!(std::sync::Arc::ptr_eq(&items[3], &items[4]), "changed lines are shared from then on");
    }

    #[test]
    fn a_line_that_is_not_utf8_or_json_is_named_by_number() {
        let mut bytes = format!("{}\n", event("e1", "2026-11-20T10:00:00+09:00")).into_bytes();
        bytes.extend_from_slice(b"{\"id\": \"\xff\"}\n");
        let path = file_with("utf8", &bytes);
        let BadInput(message) = read_events(&path).unwrap_err();
        assert_eq!(message, "line 2: cannot read: stream did not contain valid UTF-8");
        std::fs::write(&path, format!("{}\n{{\n", event("e1", "2026-11-20T10:00:00+09:00"))).unwrap();
        let BadInput(message) = read_events(&path).unwrap_err();
        std::fs::remove_file(path).ok();
        assert!(message.starts_with("line 2: $: not valid JSON"), "{message}");
    }
}
