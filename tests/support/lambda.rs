#![allow(dead_code)] // each bench uses part of it
//! Running a built Lambda bootstrap on this machine: the environment the Lambda service and
//! template.yaml give it, and a runtime-API stub that hands it invocations and times them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the release bootstraps are (`AFTERCARE_BIN_DIR`, default target/release).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("AFTERCARE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release"))
}

/// What the Lambda service and template.yaml set; placeholders where nothing is contacted.
pub const ENV: &[(&str, &str)] = &[
    ("AWS_LAMBDA_FUNCTION_NAME", "aftercare-bench"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
    ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
    ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/aftercare-bench"),
    ("AWS_REGION", "ap-northeast-1"),
    ("AWS_ACCESS_KEY_ID", "bench"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("TABLE_NAME", "aftercare"),
    ("SCHEDULE_GROUP", "aftercare"),
    ("STEP_FUNCTION_ARN", "arn:aws:lambda:ap-northeast-1:123456789012:function:aftercare-step"),
    ("SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/aftercare-scheduler"),
    ("DLQ_ARN", "arn:aws:sqs:ap-northeast-1:123456789012:aftercare-dlq"),
    ("UNSUBSCRIBE_SECRET", "0909090909090909090909090909090909090909090909090909090909090909"),
    ("PUBLIC_BASE_URL", "https://api.example.com"),
    // sha256("bench"): the ingest key is `bench`.
    ("API_KEY_HASHES", "1b32c28cb38c05480eccc1bd60ff97029b57a05c96718b96dad7e9d84894f549"),
];

/// The bootstrap as Lambda starts it: nothing of this process's environment, only `ENV`,
/// `overrides` and the runtime API's address; no input, its logs (standard output) dropped.
pub fn command(binary: &std::path::Path, runtime_api: &str, overrides: &[(&str, String)]) -> Command {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(ENV.iter().copied())
        .envs(overrides.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// One invocation as the function answered it.
pub struct Answer {
    /// From the stub handing over the event to the function posting its result: the
    /// invocation's duration as Lambda measures it, before rounding up to the millisecond.
    pub duration: Duration,
    pub body: String,
}

/// A warm function: its process, started once, and the stub it polls.
pub struct WarmFunction {
    child: Child,
    events: Sender<String>,
    answers: Receiver<Result<Answer, String>>,
}

impl WarmFunction {
    /// Starts `binary` with `ENV`, `overrides` on top, and a stub as its runtime API.
    pub fn start(binary: &std::path::Path, overrides: &[(&str, String)]) -> WarmFunction {
        let listener = TcpListener::bind("127.0.0.1:0").expect("stub listens");
        let address = listener.local_addr().expect("stub address").to_string();
        let (events, next_events) = channel::<String>();
        let (answer, answers) = channel();
        let shared = Arc::new(Stub { events: Mutex::new(next_events), answer: Mutex::new(answer), started: Mutex::new(HashMap::new()), handed_out: AtomicU64::new(0) });
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let stub = shared.clone();
                std::thread::spawn(move || stub.serve(stream));
            }
        });
        let child = command(binary, &address, overrides).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        WarmFunction { child, events, answers }
    }

    /// Hands the function one event and waits for its result (an error result panics).
    pub fn invoke(&self, event: &str) -> Answer {
        self.events.send(event.to_owned()).expect("stub is running");
        match self.answers.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => panic!("the function reported an error: {error}"),
            Err(e) => panic!("no answer from the function: {e}"),
        }
    }
}

impl WarmFunction {
    /// CPU time the function's threads have used so far, from Linux's per-thread
    /// `se.sum_exec_runtime` (`/proc/<pid>/task/*/sched`); `None` where that is not readable.
    pub fn cpu_time(&self) -> Option<Duration> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).ok()?;
        let mut total_ms = 0.0;
        for task in tasks.flatten() {
            let sched = std::fs::read_to_string(task.path().join("sched")).ok()?;
            let line = sched.lines().find(|l| l.starts_with("se.sum_exec_runtime"))?;
            total_ms += line.split(':').nth(1)?.trim().parse::<f64>().ok()?;
        }
        Some(Duration::from_secs_f64(total_ms / 1000.0))
    }
}

impl Drop for WarmFunction {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Stub {
    events: Mutex<Receiver<String>>,
    answer: Mutex<Sender<Result<Answer, String>>>,
    started: Mutex<HashMap<String, Instant>>,
    /// Request ids are unique across the client's connections.
    handed_out: AtomicU64,
}

impl Stub {
    /// One connection of the runtime client: requests one after another (keep-alive).
    fn serve(&self, stream: TcpStream) {
        // Without it, Nagle's algorithm holds a reply's body until the head is acknowledged,
        // and the client's delayed ACK adds 40 ms to every invocation.
        let _ = stream.set_nodelay(true);
        let mut writer = stream.try_clone().expect("stream");
        let mut reader = BufReader::new(stream);
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                if header == "\r\n" {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            if path.ends_with("/invocation/next") {
                let Ok(event) = self.events.lock().expect("stub lock").recv() else { return };
                let id = format!("bench-{}", self.handed_out.fetch_add(1, Ordering::Relaxed) + 1);
                let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() + 60_000;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {id}\r\nlambda-runtime-deadline-ms: {deadline}\r\nlambda-runtime-invoked-function-arn: arn:aws:lambda:ap-northeast-1:123456789012:function:aftercare-bench\r\nlambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\ncontent-length: {}\r\n\r\n",
                    event.len()
                );
                self.started.lock().expect("stub lock").insert(id, Instant::now());
                if writer.write_all(format!("{head}{event}").as_bytes()).is_err() {
                    return;
                }
            } else {
                let ended = Instant::now();
                let id = path.trim_start_matches("/2018-06-01/runtime/invocation/").split('/').next().unwrap_or_default().to_owned();
                let body = String::from_utf8_lossy(&body).into_owned();
                let started = self.started.lock().expect("stub lock").remove(&id);
                let result = match (path.ends_with("/response"), started) {
                    (true, Some(started)) => Ok(Answer { duration: ended - started, body }),
                    _ => Err(format!("{path}: {body}")),
                };
                let _ = self.answer.lock().expect("stub lock").send(result);
                if writer.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").is_err() {
                    return;
                }
            }
        }
    }
}
