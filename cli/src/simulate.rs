//! `aftercare simulate`: FLOWS.md §4. The real engine and services on in-memory ports,
//! driven by a virtual clock: months of flows in milliseconds.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use aftercare_core::domain::{CustomerId, Event, JsonDoc, LineItem};
use aftercare_core::flow::FlowSet;
use aftercare_core::service::{SendReport, ServiceError};
use aftercare_core::simulation::{Simulation, Turn};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;

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
    /// Customers simulated a group at a time, this many to a group, their lines printed at
    /// the end; 0: all together, printing as it goes (as with --engagement). A speed setting:
    /// the lines are the same for any value.
    #[arg(long, default_value_t = 32)]
    customers_per_group: u32,
    #[command(flatten)]
    output: crate::report::Output,
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
    let mut lines = FileLines::open(path)?;
    // Sized once, from the file's length: growing the list step by step copied and
    // page-faulted it over again (~3 % of a simulation), and counting the lines first read the
    // file twice (~2 %). An envelope is rarely under 256 bytes (a registration is ~280), so
    // this is seldom short; a pipe (`--events <(…)`) has no length and grows the list.
    let estimate = lines.file_len().map_or(0, |len| usize::try_from(len / LEAST_LINE_BYTES).unwrap_or(0));
    let mut events = Vec::with_capacity(estimate);
    let mut shared_items = SharedItems::default();
    while let Some((line, bytes)) = lines.next_line()? {
        let Some(mut event) = parse_line(line, bytes)? else { continue };
        shared_items.share(&mut event);
        events.push(InputEvent { line, at: event.occurred_at_utc(), event: Box::new(event) });
    }
    events.sort_by_key(|e| e.at);
    Ok(events)
}

/// An events file's lines, numbered from 1, each as read, with its newline if it has one.
struct FileLines {
    reader: BufReader<std::fs::File>,
    bytes: Vec<u8>,
    number: usize,
}

impl FileLines {
    fn open(path: &PathBuf) -> Result<FileLines, BadInput> {
        let file = std::fs::File::open(path).map_err(|e| BadInput(format!("cannot open {}: {e}", path.display())))?;
        Ok(FileLines { reader: BufReader::with_capacity(1 << 16, file), bytes: Vec::new(), number: 0 })
    }

    /// The file's length, if it is a file (a pipe has none).
    fn file_len(&self) -> Option<u64> {
        self.reader.get_ref().metadata().ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// The next line and its number; `None` after the last.
    fn next_line(&mut self) -> Result<Option<(usize, &[u8])>, BadInput> {
        self.bytes.clear();
        self.number += 1;
        match self.reader.read_until(b'\n', &mut self.bytes) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some((self.number, &self.bytes))),
            Err(e) => Err(BadInput(format!("line {}: cannot read: {e}", self.number))),
        }
    }
}

/// One line's envelope, checked; `None` for a blank line. `bytes` is the line as read, with
/// its newline if it has one.
fn parse_line(line: usize, bytes: &[u8]) -> Result<Option<Event>, BadInput> {
    let text = std::str::from_utf8(bytes).map_err(|_| BadInput(format!("line {line}: cannot read: stream did not contain valid UTF-8")))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    // A `JsonDoc`, not a `Value`: its strings borrow from the line, and the event is read
    // from it by the same rules (BENCHMARKS.md, item 40).
    let doc: JsonDoc = serde_json::from_str(text).map_err(|e| BadInput(format!("line {line}: $: not valid JSON: {e}")))?;
    Event::parse_doc(&doc).map(Some).map_err(|e| BadInput(field_message(line, &e.field, &e.message)))
}

/// The events file, read once into its customers' groups: each line, read for its time and
/// customer only, goes into the group of its customer (`per_group` customers to a group, in
/// the order they first appear in the file), and the rest of it is parsed when the group
/// runs, into memory the cache still holds, and freed right after. Parsed all at first, the
/// events of 100k customers took 0.6 GB, a group's spread over all of it (BENCHMARKS.md,
/// simulator, item 103).
struct GroupedLines {
    groups: Vec<LineGroup>,
    /// The first and the last event's times.
    span: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A group's lines.
#[derive(Default)]
struct LineGroup {
    /// Their text as read, in chunks that stay put, a line never split; freed when the
    /// group has run, for the groups after it.
    chunks: Vec<Vec<u8>>,
    /// In file order as read; in time order (ties in file order) once the file is read.
    lines: Vec<GroupLine>,
}

struct GroupLine {
    line: usize,
    at: DateTime<Utc>,
    chunk: usize,
    text: Range<usize>,
}

/// The size of a group's chunk of lines: a group of 32 customers' year is ~130 KB, and its
/// last chunk is on average half empty.
const LINE_CHUNK_BYTES: usize = 16 << 10;

impl LineGroup {
    fn push(&mut self, line: usize, at: DateTime<Utc>, text: &[u8]) {
        if self.chunks.last().is_none_or(|chunk| chunk.capacity() - chunk.len() < text.len()) {
            self.chunks.push(Vec::with_capacity(LINE_CHUNK_BYTES.max(text.len())));
        }
        let chunk = self.chunks.len() - 1;
        let Some(bytes) = self.chunks.last_mut() else { return };
        let from = bytes.len();
        bytes.extend_from_slice(text);
        self.lines.push(GroupLine { line, at, chunk, text: from..bytes.len() });
    }

    fn text(&self, line: &GroupLine) -> &[u8] {
        &self.chunks[line.chunk][line.text.clone()]
    }
}

/// The only fields a line's head is read for; the rest of the line is checked as JSON, not
/// kept.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    #[serde(borrow)]
    customer: HeadCustomer<'a>,
}

#[derive(Deserialize)]
struct HeadCustomer<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// Every line into its customer's group. A line whose head cannot be read so (a blank one, a
/// bad one, or one only the envelope's rules accept, such as one with a key twice) is parsed
/// whole, by those rules; a bad line stops the reading, and the first bad line of the file
/// is reported, as `read_events` reports it.
fn read_groups(path: &PathBuf, per_group: usize) -> Result<GroupedLines, BadInput> {
    let per_group = per_group.max(1);
    let mut lines = FileLines::open(path)?;
    let mut group_of: rustc_hash::FxHashMap<CustomerId, usize> = Default::default();
    let mut groups: Vec<LineGroup> = Vec::new();
    let mut span: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    while let Some((line, bytes)) = lines.next_line()? {
        let (at, customer) = match read_head(bytes) {
            Some(head) => head,
            None => match parse_line(line, bytes) {
                Ok(Some(event)) => (event.occurred_at_utc(), event.customer.id),
                Ok(None) => continue,
                Err(error) => return Err(first_bad_line(&groups, error)),
            },
        };
        let next = group_of.len() / per_group;
        let group = *group_of.entry(customer).or_insert(next);
        if group == groups.len() {
            groups.push(LineGroup::default());
        }
        groups[group].push(line, at, bytes);
        span = Some(span.map_or((at, at), |(first, last)| (first.min(at), last.max(at))));
    }
    for group in &mut groups {
        group.lines.sort_by_key(|l| l.at);
    }
    Ok(GroupedLines { groups, span })
}

/// A line's time and customer, read and checked as the envelope's rules read them, or
/// `None` if this quick reading cannot tell.
fn read_head(bytes: &[u8]) -> Option<(DateTime<Utc>, CustomerId)> {
    let head: Head = serde_json::from_str(std::str::from_utf8(bytes).ok()?).ok()?;
    let at = DateTime::parse_from_rfc3339(&head.occurred_at).ok()?.with_timezone(&Utc);
    Some((at, CustomerId::parse(&head.customer.id).ok()?))
}

/// The first of these groups' lines in file order that does not parse: the one to report,
/// for a line found bad while running need not be the first. `found` if there is none.
fn first_bad_line(groups: &[LineGroup], found: BadInput) -> BadInput {
    let mut lines: Vec<(usize, &[u8])> = groups.iter().flat_map(|group| group.lines.iter().map(move |l| (l.line, group.text(l)))).collect();
    lines.sort_unstable_by_key(|(line, _)| *line);
    lines.into_iter().find_map(|(line, text)| parse_line(line, text).err()).unwrap_or(found)
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
    // The engagement model draws for every customer from one seeded sequence, in the order
    // the emails go out: its simulation runs all customers together.
    let together = args.engagement || args.customers_per_group == 0;
    let per_group = args.customers_per_group as usize;
    let input = if together { Input::Events(read_events(&args.events)?) } else { Input::Grouped(read_groups(&args.events, per_group)?) };
    let span = input.span();
    let until = match &args.until {
        Some(text) => DateTime::parse_from_rfc3339(text).map_err(|_| BadInput(format!("--until: {text:?} is not an RFC 3339 time")))?.with_timezone(&Utc),
        None => span.map_or_else(Utc::now, |(_, last)| last) + Duration::days(400),
    };
    let start = span.map_or(until, |(first, _)| first);
    // Counters are for the report alone.
    let simulation = if args.report { Simulation::new(flows, start) } else { Simulation::sends_only(flows, start) };
    let mut simulation = simulation.map_err(|e| BadInput(format!("{}: {e:#}", args.flows.display())))?;
    if args.engagement {
        simulation = simulation.with_recipients(Box::new(crate::engagement::EngagementModel::new(args.seed, crate::engagement::TYPICAL)));
    }
    let range = if args.report { Some(args.output.range(until.date_naive()).map_err(BadInput)?) } else { None };
    // With --report on standard output, the report replaces the send lines.
    let print = (!args.report || args.output.out.is_some()).then_some(Printing { show_skipped: args.show_skipped });
    let stdout = std::io::stdout();
    // The groups' lines go out at the end, 0.4 GB of them at 100k customers: in 1 MiB writes
    // rather than 8 KiB ones.
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let ran = match input {
        Input::Events(events) => run_together(&simulation, events, until, print, &mut out).await,
        Input::Grouped(lines) => {
            // Steps up to the last event fire as they would before it, also past --until.
            let horizon = span.map_or(until, |(_, last)| last.max(until));
            run_in_groups(&mut simulation, lines.groups, start, horizon, print, &mut out).await
        }
    };
    let _ = out.flush();
    drop(out);
    ran?;
    if let Some((from, to)) = range {
        let report = simulation.app.report(from, to).await.map_err(|e| BadInput(e.to_string()))?;
        args.output.write(&report).map_err(BadInput)?;
    }
    // The process ends here: freeing every customer's state one by one first would only take time.
    std::mem::forget(simulation);
    Ok(())
}

/// The events to simulate: parsed, for a run of all customers together, or as lines in
/// groups of customers, to parse a group at a time.
enum Input {
    Events(Vec<InputEvent>),
    Grouped(GroupedLines),
}

impl Input {
    /// The first and the last event's times.
    fn span(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match self {
            Input::Events(events) => Some((events.first()?.at, events.last()?.at)),
            Input::Grouped(lines) => lines.span,
        }
    }
}

/// Whether send lines are printed, and which.
#[derive(Clone, Copy)]
struct Printing {
    show_skipped: bool,
}

/// A bad line met while running: the message that stops the run.
fn run_error(line: usize, error: ServiceError) -> BadInput {
    match error {
        ServiceError::Invalid { error, .. } => BadInput(field_message(line, &error.field, &error.message)),
        e => BadInput(format!("line {line}: {e}")),
    }
}

/// Every customer in one simulation, printing as it goes; a line that cannot be run stops it
/// after what came before it is printed.
async fn run_together(simulation: &Simulation, events: Vec<InputEvent>, until: DateTime<Utc>, print: Option<Printing>, out: &mut impl Write) -> Result<(), BadInput> {
    // Consumed: each event is freed once run, and the states that grow meanwhile reuse its
    // memory (BENCHMARKS.md, item 31).
    let mut reports = Vec::new();
    for event in events {
        reports.clear();
        let ran = simulation.ingest_event_into(&event.event, &mut reports).await;
        if let Some(print) = print {
            print_reports(&reports, print.show_skipped, out);
        }
        ran.map_err(|e| run_error(event.line, e))?;
    }
    simulation
        .run_until_each(until, |reports| {
            if let Some(print) = print {
                print_reports(reports, print.show_skipped, out);
            }
        })
        .await
        .map_err(|e| BadInput(e.to_string()))
}

/// The lines printed by the groups run so far, each decision's with its turn, waiting to be
/// merged into one order.
#[derive(Default)]
struct Printed {
    /// In chunks that stay put once written: one growing list was copied, and page-faulted
    /// anew, each time it doubled.
    chunks: Vec<Vec<u8>>,
    /// Each decision that printed, group after group (each group's in turn order).
    decisions: Vec<PrintedDecision>,
    /// Where each group's decisions start in `decisions`.
    group_starts: Vec<usize>,
}

struct PrintedDecision {
    turn: Turn,
    chunk: u32,
    from: u32,
    to: u32,
}

/// A chunk of printed lines; a decision's lines go whole into one. The size of a group's
/// chunk of input lines, so the lines a group prints take the memory of the lines the groups
/// before it freed (BENCHMARKS.md, simulator, item 103).
const CHUNK_BYTES: usize = LINE_CHUNK_BYTES;

impl Printed {
    fn start_group(&mut self) {
        self.group_starts.push(self.decisions.len());
    }

    /// Prints a decision's sends (and skips) into the last chunk.
    fn keep(&mut self, turn: &Turn, reports: &[SendReport], show_skipped: bool) {
        if self.chunks.last().is_none_or(|chunk| chunk.capacity() - chunk.len() < CHUNK_BYTES / 16) {
            self.chunks.push(Vec::with_capacity(CHUNK_BYTES));
        }
        let chunk_index = self.chunks.len() - 1;
        let Some(chunk) = self.chunks.last_mut() else { return };
        let from = chunk.len();
        print_reports(reports, show_skipped, chunk);
        if chunk.len() > from {
            // A chunk stays far below 4 GiB: a decision's lines start in its first 1 MiB.
            let (Ok(chunk_index), Ok(from), Ok(to)) = (u32::try_from(chunk_index), u32::try_from(from), u32::try_from(chunk.len())) else { return };
            self.decisions.push(PrintedDecision { turn: turn.clone(), chunk: chunk_index, from, to });
        }
    }

    /// Every group's lines in turn order, those before `before` (a failed decision) only.
    /// Their order first, then the lines: written as the merge found them, each line's read
    /// from memory waited for the merge's reads before it (BENCHMARKS.md, simulator, item 106).
    fn write_in_turn(&self, before: Option<&Turn>, out: &mut impl Write) {
        for at in self.order_in_turn(before) {
            let decision = &self.decisions[at];
            let _ = out.write_all(&self.chunks[decision.chunk as usize][decision.from as usize..decision.to as usize]);
        }
    }

    /// The decisions' indices in turn order, up to `before`: the groups' lists merged.
    fn order_in_turn(&self, before: Option<&Turn>) -> Vec<usize> {
        use std::cmp::Reverse;
        let ends = self.group_starts.iter().skip(1).copied().chain([self.decisions.len()]);
        let groups: Vec<std::ops::Range<usize>> = self.group_starts.iter().copied().zip(ends).map(|(start, end)| start..end).collect();
        // Each group's next decision: its time (compared without reaching for its turn, which
        // decides only ties), its turn, its group, its index in `decisions`.
        let next_of = |at: usize, g: usize| {
            let turn = &self.decisions[at].turn;
            Reverse(((turn.at().timestamp(), turn.at().timestamp_subsec_nanos()), turn, g, at))
        };
        let mut next: std::collections::BinaryHeap<_> = groups.iter().enumerate().filter(|(_, range)| !range.is_empty()).map(|(g, range)| next_of(range.start, g)).collect();
        let mut order = Vec::with_capacity(self.decisions.len());
        while let Some(Reverse((_, turn, g, at))) = next.pop() {
            if before.is_some_and(|failed| turn >= failed) {
                break;
            }
            order.push(at);
            if at + 1 < groups[g].end {
                next.push(next_of(at + 1, g));
            }
        }
        order
    }
}

/// The customers' groups one at a time, each simulated alone from `start` to `horizon` in the
/// one store, which forgets its states after it; the lines are printed at the end in the
/// order of one simulation of them all (their turns). Run together, a store's customer states are spread over more memory than the
/// cache holds: a year of 100k customers took 1.6 times as long per event as one of 1k
/// (BENCHMARKS.md, simulator, item 101).
/// A line that cannot be run stops the run: what came before it in that order is printed.
async fn run_in_groups(simulation: &mut Simulation, mut groups: Vec<LineGroup>, start: DateTime<Utc>, horizon: DateTime<Utc>, print: Option<Printing>, out: &mut impl Write) -> Result<(), BadInput> {
    let mut printed = Printed::default();
    let mut failure: Option<(Turn, BadInput)> = None;
    for g in 0..groups.len() {
        simulation.restart(start);
        printed.start_group();
        let mut keep = |turn: &Turn, reports: &[SendReport]| {
            if let Some(print) = print {
                printed.keep(turn, reports, print.show_skipped);
            }
        };
        match run_group(simulation, &groups[g], horizon, &mut keep).await {
            Ok(()) => {}
            // The groups run before parsed whole. As when every line is parsed first,
            // nothing is printed.
            Err(GroupFailure::BadLine(error)) => return Err(first_bad_line(&groups[g..], error)),
            Err(GroupFailure::Run(turn, error)) => {
                if failure.as_ref().is_none_or(|(first, _)| turn < *first) {
                    failure = Some((turn, error));
                }
            }
        }
        groups[g] = LineGroup::default();
    }
    printed.write_in_turn(failure.as_ref().map(|(turn, _)| turn), out);
    match failure {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

/// Why a group stopped.
enum GroupFailure {
    /// A line that does not parse.
    BadLine(BadInput),
    /// A decision that could not be run, at its turn.
    Run(Turn, BadInput),
}

/// One group's events, each parsed at its turn and freed after it, then its steps due up to
/// `horizon`.
async fn run_group(simulation: &mut Simulation, group: &LineGroup, horizon: DateTime<Utc>, keep: &mut impl FnMut(&Turn, &[SendReport])) -> Result<(), GroupFailure> {
    // An order is one customer's: its events are all in this group.
    let mut shared_items = SharedItems::default();
    for line in &group.lines {
        let Some(mut event) = parse_line(line.line, group.text(line)).map_err(GroupFailure::BadLine)? else { continue };
        shared_items.share(&mut event);
        // The line number ranks events at the same time as the file does.
        let input_order = line.line as u64;
        simulation.ingest_event_in_turn(&event, input_order, keep).await.map_err(|(turn, e)| GroupFailure::Run(turn, run_error(line.line, e)))?;
    }
    simulation.run_until_in_turn(horizon, keep).await.map_err(|(turn, e)| GroupFailure::Run(turn, BadInput(e.to_string())))
}

/// Generic over the writer: a line is written in a dozen small pieces, and through
/// `dyn Write` each was a call into the buffer instead of a copy.
fn print_reports(reports: &[SendReport], show_skipped: bool, out: &mut impl Write) {
    for r in reports {
        if r.status != "sent" && !show_skipped {
            continue;
        }
        // Straight into the buffered output: no string per line.
        let _ = write_line(r, out);
    }
}

/// One output line, fields in the documented order (`Line`'s serialization, which the tests
/// compare it with). By hand: through serde each key went through the string escaper and
/// the time through a `String` of its own, 1.6 million of each at 100k customers
/// (BENCHMARKS.md, simulator, item 107).
fn write_line(r: &SendReport, out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(b"{\"at\":\"")?;
    write_time(r.at, out)?;
    out.write_all(b"\",\"customer_id\":")?;
    serde_json::to_writer(&mut *out, r.customer_id.as_str())?;
    out.write_all(b",\"flow\":")?;
    serde_json::to_writer(&mut *out, r.flow.as_str())?;
    out.write_all(b",\"template\":")?;
    serde_json::to_writer(&mut *out, r.template.as_str())?;
    out.write_all(b",\"locale\":")?;
    serde_json::to_writer(&mut *out, r.locale.as_str())?;
    out.write_all(b",\"category\":")?;
    serde_json::to_writer(&mut *out, r.category)?;
    out.write_all(b",\"to\":")?;
    serde_json::to_writer(&mut *out, r.to.as_str())?;
    out.write_all(b",\"subject\":")?;
    serde_json::to_writer(&mut *out, &r.subject)?;
    out.write_all(b",\"status\":")?;
    serde_json::to_writer(&mut *out, r.status)?;
    if let Some(reason) = &r.reason {
        out.write_all(b",\"reason\":")?;
        serde_json::to_writer(&mut *out, reason.as_str())?;
    }
    out.write_all(b"}\n")
}

/// `2026-11-20T01:15:00Z`, as `to_rfc3339_opts(SecondsFormat::Secs, true)` writes it: digit by
/// digit for years 0–9999, through chrono for the others (which it writes with a sign).
fn write_time(at: DateTime<Utc>, out: &mut impl Write) -> std::io::Result<()> {
    use chrono::{Datelike, Timelike};
    let Ok(year) = u32::try_from(at.year()).map_err(drop).and_then(|y| if y <= 9999 { Ok(y) } else { Err(()) }) else {
        return out.write_all(at.to_rfc3339_opts(SecondsFormat::Secs, true).as_bytes());
    };
    let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let (century, rest) = (two(year / 100), two(year % 100));
    // A leap second is second 59 and more than 10⁹ nanoseconds: chrono writes it as 60.
    let second = at.second() + at.nanosecond() / 1_000_000_000;
    let (month, day, hour, minute, second) = (two(at.month()), two(at.day()), two(at.hour()), two(at.minute()), two(second));
    out.write_all(&[
        century[0], century[1], rest[0], rest[1], b'-', month[0], month[1], b'-', day[0], day[1], b'T', hour[0], hour[1], b':', minute[0], minute[1], b':',
        second[0], second[1], b'Z',
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One output line, fields in the documented order: what `write_line` writes, by serde.
    #[derive(serde::Serialize)]
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

    #[test]
    fn a_line_is_written_as_serde_writes_its_fields() {
        let report = |at, subject: &str, reason: Option<&str>| SendReport {
            at,
            customer_id: "c\"1\\".into(),
            flow: "order_confirmation".into(),
            step_id: "send".into(),
            template: "order_confirmation".into(),
            locale: "ja-JP".into(),
            category: "transactional",
            to: "c1@example.jp".into(),
            subject: subject.into(),
            status: if reason.is_some() { "skipped" } else { "sent" },
            reason: reason.map(Into::into),
            message_id: Some("m-1".into()),
            enrollment_id: "e".into(),
            variant: None,
        };
        let time = |year: i32, month: u32, day: u32, (hour, minute, second, nanos): (u32, u32, u32, u32)| {
            chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap().and_hms_nano_opt(hour, minute, second, nanos).unwrap().and_utc()
        };
        // Years of 1 to 4 digits, past 9999, and before year 0; a second's fraction is dropped;
        // a leap second.
        let times = [time(2026, 11, 20, (1, 15, 0, 0)), time(2026, 11, 20, (10, 15, 9, 500_000_000)), time(2016, 12, 31, (23, 59, 59, 1_500_000_000)), time(999, 1, 2, (3, 4, 5, 0)), time(7, 10, 11, (12, 13, 14, 0)), time(9999, 12, 31, (23, 59, 59, 0)), time(10000, 1, 1, (0, 0, 0, 0)), time(-1, 6, 30, (12, 0, 0, 0))];
        for at in times {
            for (subject, reason) in [("ご注文ありがとうございます（#1001）", None), ("a \"quoted\"\\ line\n\t\u{1}", Some("no_consent"))] {
                let r = report(at, subject, reason);
                let mut written = Vec::new();
                write_line(&r, &mut written).unwrap();
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
                let expected = serde_json::to_string(&line).unwrap() + "\n";
                assert_eq!(String::from_utf8(written).unwrap(), expected, "{at:?}");
            }
        }
    }

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

    /// The event ids `read` reads from a pipe written on another thread.
    fn read_from_a_pipe(name: &str, read: fn(&PathBuf) -> Vec<String>) -> Vec<String> {
        let path = std::env::temp_dir().join(format!("aftercare-read-events-{}-fifo-{name}", std::process::id()));
        std::fs::remove_file(&path).ok();
        let made = std::process::Command::new("mkfifo").arg(&path).status().expect("mkfifo runs");
        assert!(made.success());
        let text = format!("{}\n{}\n", event("e1", "2026-11-20T10:00:00+09:00"), event("e2", "2026-11-20T11:00:00+09:00"));
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || std::fs::write(path, text).unwrap())
        };
        // Read on a thread: opening the pipe a second time would wait for a writer forever.
        let (done, read_ids) = std::sync::mpsc::channel();
        let reading = path.clone();
        std::thread::spawn(move || done.send(read(&reading)));
        let ids = read_ids.recv_timeout(std::time::Duration::from_secs(20)).expect("the pipe is read once, to its end");
        writer.join().unwrap();
        std::fs::remove_file(path).ok();
        ids
    }

    #[test]
    fn events_from_a_pipe_are_read_once_and_all_of_them() {
        let parsed = read_from_a_pipe("parsed", |path| read_events(path).unwrap().iter().map(|e| e.event.id.as_str().to_owned()).collect());
        assert_eq!(parsed, ["e1", "e2"]);
        let grouped = read_from_a_pipe("grouped", |path| {
            let read = read_groups(path, 32).unwrap();
            read.groups.iter().flat_map(|g| g.lines.iter().map(|l| parse_line(l.line, g.text(l)).unwrap().unwrap().id.as_str().to_owned())).collect()
        });
        assert_eq!(grouped, ["e1", "e2"]);
    }

    #[test]
    fn lines_go_to_their_customers_group_in_time_order_with_their_numbers() {
        let of = |id: &str, customer: &str, at: &str| {
            serde_json::json!({"id": id, "type": "customer_registered", "occurred_at": at, "customer": {"id": customer}}).to_string()
        };
        let lines = [
            of("e1", "c1", "2026-11-20T10:00:00Z") + "\r",
            String::new(),
            of("e2", "c2", "2026-11-20T09:00:00Z"),
            of("e3", "c3", "2026-11-20T08:00:00Z"),
            of("e4", "c1", "2026-11-20T07:00:00+00:00"),
            of("e5", "c3", "2026-11-20T20:00:00+09:00"),
            of("e6", "c2", "2026-11-20T09:00:00Z"),
        ];
        let path = file_with("groups", lines.join("\n").as_bytes());
        let read = read_groups(&path, 2).unwrap();
        std::fs::remove_file(path).ok();
        let groups: Vec<Vec<(String, usize)>> = read
            .groups
            .iter()
            .map(|g| g.lines.iter().map(|l| (parse_line(l.line, g.text(l)).unwrap().unwrap().id.as_str().to_owned(), l.line)).collect())
            .collect();
        let expected = |lines: &[(&str, usize)]| lines.iter().map(|(id, line)| (id.to_string(), *line)).collect::<Vec<_>>();
        // Two customers to a group, in the order they first appear in the file; ties in file order.
        assert_eq!(groups, [expected(&[("e4", 5), ("e2", 3), ("e6", 7), ("e1", 1)]), expected(&[("e3", 4), ("e5", 6)])]);
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        assert_eq!(read.span, Some((at("2026-11-20T07:00:00Z"), at("2026-11-20T11:00:00Z"))));
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
