//! `aftercare cost --orders N`: what N orders cost on AWS through every default flow.

use std::path::PathBuf;
use std::process::ExitCode;

use aftercare_core::cost::{measure, one_order_journey, ASSUMED_MS_FEEDBACK, ASSUMED_MS_INGEST, ASSUMED_MS_STEP, FEEDBACK_EVENTS_PER_EMAIL};
use aftercare_core::flow::FlowSet;

#[derive(clap::Args)]
pub struct CostArgs {
    /// How many orders.
    #[arg(long, default_value_t = 1000)]
    orders: u64,
    /// The flows folder.
    #[arg(long, default_value = "flows")]
    flows: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
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
    let until = chrono::DateTime::parse_from_rfc3339("2027-12-25T00:00:00Z").map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_else(|_| chrono::Utc::now());
    let per_order = match runtime.block_on(measure(flows, &one_order_journey(), until)) {
        Ok(usage) => usage,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let bill = per_order.scaled(args.orders as f64).bill();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bill).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let u = &bill.usage;
    println!("{} orders, each placed, shipped and delivered, through every default flow for 400 days", args.orders);
    println!();
    println!("| what | count | USD |");
    println!("|---|---:|---:|");
    println!("| storefront events (ingest invocations) | {:.0} | |", u.ingest_invocations);
    println!("| scheduled steps run (step invocations = Scheduler invocations) | {:.0} | {:.4} |", u.step_invocations, bill.scheduler);
    println!("| SES events to the feedback function ({FEEDBACK_EVENTS_PER_EMAIL} per email) | {:.0} | |", u.feedback_invocations);
    println!("| Lambda (arm64, 128 MB; {ASSUMED_MS_INGEST}/{ASSUMED_MS_STEP}/{ASSUMED_MS_FEEDBACK} ms assumed) | {:.0} invocations | {:.4} |", u.ingest_invocations + u.step_invocations + u.feedback_invocations, bill.lambda);
    println!("| DynamoDB on-demand: {:.0} calls, {:.0} RRU, {:.0} WRU | | {:.4} |", u.dynamodb_calls, u.read_units, u.write_units, bill.dynamodb);
    println!("| Scheduler CreateSchedule / DeleteSchedule (no charge) | {:.0} / {:.0} | 0 |", u.scheduler_creates, u.scheduler_deletes);
    println!("| SES emails | {:.0} | {:.4} |", u.ses_sends, bill.ses);
    println!("| EventBridge `Email Sent` events | {:.0} | {:.4} |", u.eventbridge_events, bill.eventbridge);
    println!("| **total** | | **{:.4}** |", bill.total);
    ExitCode::SUCCESS
}
