//! `aftercare`: run the whole engine locally (`dev`), replay events through it with a
//! virtual clock (`simulate`), check a flows folder (`validate`), and see every email (`preview`).

mod cost;
mod dev;
mod engagement;
mod generate;
mod preview;
mod report;
mod simulate;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The simulator and the cost model allocate and free a customer state's worth of small
/// values per event; mimalloc does that in about half of glibc's time (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: aftercare_heap::MiMalloc = aftercare_heap::MiMalloc;

#[derive(Parser)]
#[command(name = "aftercare", version, about = "Lifecycle email from storefront events — locally, with no AWS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve POST /v1/events on localhost with a SQLite store, a timer scheduler and an .eml outbox.
    Dev(dev::DevArgs),
    /// Replay a JSON-lines event file with a virtual clock and print every send.
    Simulate(simulate::SimulateArgs),
    /// What N orders cost on AWS (DynamoDB, Lambda, Scheduler, SES, EventBridge): one order through every default flow, or at a store's mix (--events).
    Cost(cost::CostArgs),
    /// Write a realistic year of events for N customers (JSON lines), for load tests and benchmarks.
    Generate(generate::GenerateArgs),
    /// Funnels, A/B results, deliverability and retention from `aftercare dev`'s data.
    Report(report::ReportArgs),
    /// Render every template in every locale with sample data into an HTML gallery.
    Preview(preview::PreviewArgs),
    /// Check every flow and template in a flows folder.
    Validate {
        /// The flows folder.
        #[arg(long, default_value = "flows")]
        flows: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => dev::run(args),
        Command::Simulate(args) => {
            aftercare_heap::for_a_batch_run();
            simulate::run(args)
        }
        Command::Preview(args) => preview::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Cost(args) => {
            aftercare_heap::for_a_batch_run();
            cost::run(args)
        }
        Command::Report(args) => report::run(args),
        Command::Validate { flows } => validate::run(&flows),
    }
}
