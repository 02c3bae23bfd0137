//! `aftercare report`: funnels, A/B results, deliverability and retention from the counters
//! `aftercare dev` keeps in its SQLite file (the same report the AWS API serves).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aftercare_core::flow::FlowSet;
use aftercare_core::local::{LocalDb, SqliteStore};
use aftercare_core::ports::Store;
use aftercare_core::report::{to_html, to_table, Report, BEGINNING};
use chrono::{Duration, NaiveDate, Utc};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Html,
}

/// The period and where the report goes; shared with `simulate --report`.
#[derive(clap::Args, Debug, Clone)]
pub struct Output {
    /// First day (UTC, YYYY-MM-DD); default: 29 days before --to.
    #[arg(long)]
    pub from: Option<NaiveDate>,
    /// Last day (UTC, YYYY-MM-DD); default: today (the simulation's last day for simulate).
    #[arg(long)]
    pub to: Option<NaiveDate>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The folder `aftercare dev` keeps its data in.
    #[arg(long, default_value = ".aftercare")]
    data: PathBuf,
    /// The flows folder.
    #[arg(long, default_value = "flows")]
    flows: PathBuf,
    #[command(flatten)]
    output: Output,
}

impl Output {
    /// (from, to), with defaults around `last_day`; an error names the flag.
    pub fn range(&self, last_day: NaiveDate) -> Result<(NaiveDate, NaiveDate), String> {
        let to = self.to.unwrap_or(last_day);
        let from = self.from.unwrap_or(to - Duration::days(29));
        if from > to {
            return Err(format!("--from {from} is after --to {to}"));
        }
        if from < BEGINNING {
            return Err(format!("--from {from} is before {BEGINNING}"));
        }
        Ok((from, to))
    }

    pub fn write(&self, report: &Report) -> Result<(), String> {
        let text = match self.format {
            Format::Table => to_table(report),
            Format::Json => serde_json::to_string_pretty(report).map_err(|e| format!("cannot encode the report: {e}"))? + "\n",
            Format::Html => to_html(report),
        };
        match &self.out {
            Some(path) => std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display())),
            None => {
                print!("{text}");
                Ok(())
            }
        }
    }
}

pub fn load_flows(dir: &Path) -> Result<FlowSet, String> {
    FlowSet::load_dir(dir).map_err(|errors| errors.iter().map(|e| format!("{}/{e}", dir.display())).collect::<Vec<_>>().join("\n"))
}

pub fn run(args: ReportArgs) -> ExitCode {
    match report(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn report(args: &ReportArgs) -> Result<(), String> {
    let flows = load_flows(&args.flows)?;
    let (from, to) = args.output.range(Utc::now().date_naive())?;
    let path = args.data.join("aftercare.db");
    if !path.exists() {
        return Err(format!("{} does not exist: run `aftercare dev --data {}` first, or pass --data", path.display(), args.data.display()));
    }
    let store = SqliteStore::new(LocalDb::open(&path).map_err(|e| format!("cannot open {}: {e:#}", path.display()))?);
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| format!("cannot start: {e}"))?;
    let rows = runtime.block_on(store.stats(BEGINNING, to)).map_err(|e| format!("cannot read counters: {e}"))?;
    args.output.write(&Report::build(&flows, &rows, from, to))
}
