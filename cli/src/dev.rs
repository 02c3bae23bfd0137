//! `aftercare dev`: the whole pipeline in one process — the same services and HTTP API as
//! the Lambdas, on a SQLite file, a timer scheduler and an `.eml` outbox.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aftercare_core::flow::FlowSet;
use aftercare_core::local::{LocalDb, LogPublisher, OutboxMailer, SqliteScheduler, SqliteStore};
use aftercare_core::ports::{Scheduler, SystemClock};
use aftercare_core::service::api::{self, AccessKeys, ApiKeys, ApiRequest};
use aftercare_core::service::unsubscribe::UnsubscribeLinks;
use aftercare_core::service::{App, Ports};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

#[derive(clap::Args)]
pub struct DevArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Folder for the SQLite database and the outbox.
    #[arg(long, default_value = ".aftercare")]
    data: PathBuf,
    /// The flows folder.
    #[arg(long, default_value = "flows")]
    flows: PathBuf,
    /// Ingest key; else AFTERCARE_API_KEY; else one is generated and printed.
    #[arg(long, env = "AFTERCARE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Admin key for reports, timelines, export and erase; else AFTERCARE_ADMIN_KEY; else one is generated and printed.
    #[arg(long, env = "AFTERCARE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
}

struct Server {
    app: App,
    keys: AccessKeys,
}

pub fn run(args: DevArgs) -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn generated_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for an API key: {e}"))?;
    Ok(format!("ac_dev_{}", hex::encode(bytes)))
}

/// The key that signs unsubscribe links, kept in the data folder so links outlive a restart.
fn unsubscribe_secret(data: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let path = data.join("unsubscribe.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim()).with_context(|| format!("{} is not hex; delete it to make a new key", path.display()));
    }
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness for the unsubscribe key: {e}"))?;
    std::fs::write(&path, hex::encode(&secret)).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secret)
}

async fn serve(args: DevArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let flows = FlowSet::load_dir(&args.flows).map_err(|errors| {
        anyhow::anyhow!("{}", errors.iter().map(|e| format!("{}/{e}", args.flows.display())).collect::<Vec<_>>().join("\n"))
    })?;
    std::fs::create_dir_all(&args.data).with_context(|| format!("cannot create {}", args.data.display()))?;
    let db_path = args.data.join("aftercare.db");
    let db = LocalDb::open(&db_path).with_context(|| format!("cannot open {}", db_path.display()))?;
    let outbox = args.data.join("outbox");
    let scheduler = Arc::new(SqliteScheduler::new(db.clone()));
    let ports = Ports {
        store: Arc::new(SqliteStore::new(db)),
        scheduler: scheduler.clone(),
        mailer: Arc::new(OutboxMailer::new(outbox.clone()).with_context(|| format!("cannot create {}", outbox.display()))?),
        publisher: Arc::new(LogPublisher),
        clock: Arc::new(SystemClock),
    };
    let (key, generated) = match args.api_key.filter(|k| !k.is_empty()) {
        Some(key) => (key, false),
        None => (generated_key()?, true),
    };
    let (admin_key, admin_generated) = match args.admin_key.filter(|k| !k.is_empty()) {
        Some(key) => (key, false),
        None => (generated_key()?.replace("ac_dev_", "ac_admin_"), true),
    };
    if admin_key == key {
        anyhow::bail!("the admin key must differ from the ingest key");
    }
    let links = UnsubscribeLinks::new(&unsubscribe_secret(&args.data)?, &format!("http://127.0.0.1:{}", args.port)).map_err(anyhow::Error::msg)?;
    let keys = AccessKeys { ingest: ApiKeys::from_plain_key(&key), admin: Some(ApiKeys::from_plain_key(&admin_key)) };
    let server = Arc::new(Server { app: App::new(flows, ports)?.with_links(links), keys });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await.with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    println!("aftercare dev: http://127.0.0.1:{}/v1/events", args.port);
    if generated {
        println!("API key (generated; set AFTERCARE_API_KEY or --api-key to choose one): {key}");
    }
    if admin_generated {
        println!("admin key for /v1/reports/flows and /v1/customers/{{id}} (generated; set AFTERCARE_ADMIN_KEY or --admin-key): {admin_key}");
    }
    println!("data: {}  outbox: {}", db_path.display(), outbox.display());
    tokio::spawn(timer_loop(server.clone(), scheduler));
    let router = axum::Router::new().fallback(handle).with_state(server);
    axum::serve(listener, router).with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); }).await?;
    Ok(())
}

async fn handle(State(server): State<Arc<Server>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> axum::response::Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let response = api::handle(
        &server.app,
        &server.keys,
        ApiRequest { method: method.as_str(), path: uri.path(), query: uri.query(), authorization: header("authorization"), content_type: header("content-type"), body: &body },
    )
    .await;
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match response.html {
        Some(html) => (status, axum::response::Html(html)).into_response(),
        None => (status, axum::Json(response.body)).into_response(),
    }
}

/// The local stand-in for EventBridge Scheduler: fire what is due, once a second.
async fn timer_loop(server: Arc<Server>, scheduler: Arc<SqliteScheduler>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let due = match scheduler.due_now(chrono::Utc::now()) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "cannot read schedules");
                continue;
            }
        };
        for step in due {
            match server.app.run_step(&step.due, &mut Vec::new()).await {
                Ok(outcome) => {
                    tracing::info!(schedule = %step.name, ?outcome, "step ran");
                    if let Err(e) = scheduler.delete(&step.name).await {
                        tracing::error!(error = %e, "cannot delete a fired schedule");
                    }
                }
                // Left in place: retried on the next tick, like Scheduler's retry policy.
                Err(e) => tracing::warn!(schedule = %step.name, error = %e, "step failed; will retry"),
            }
        }
    }
}
