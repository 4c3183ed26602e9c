//! Child processes with a deadline: every `processor` a test starts runs through this
//! module, so a child that hangs fails its test, named, with its command line and the tail
//! of what it printed, instead of holding the suite until CI's limit.
//!
//! stdin is closed (`/dev/null`) unless the test asks to write to it; stdout and stderr
//! are captured by two threads, readable while the child runs. Deadlines are hang guards,
//! not timings: keep them generous. Dropping a [`Proc`] kills the child.
#![allow(dead_code)] // each test binary uses part of it

use std::io::Read;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wait_timeout::ChildExt;

/// The deadline of a run that should take seconds: minutes.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// Lines of each stream quoted when a child fails its deadline.
const TAIL_LINES: usize = 40;

/// One captured stream: its bytes so far, and a signal when the reader reached its end.
struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Captured {
    fn start(mut pipe: impl Read + Send + 'static) -> Self {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = Arc::clone(&bytes);
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(());
        });
        Captured { bytes, done }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (bounded) for the stream's end, then takes what it captured.
    fn finish(&self) -> Vec<u8> {
        // The child has exited; only a grandchild holding the pipe could keep it open.
        let _ = self.done.recv_timeout(Duration::from_secs(10));
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A running child under the test's control.
pub struct Proc {
    child: Child,
    line: String,
    stdin: Option<ChildStdin>,
    stdout: Captured,
    stderr: Captured,
    status: Option<ExitStatus>,
}

/// The command as a shell would show it.
fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    if let Some(dir) = cmd.get_current_dir() {
        line.push_str(&format!("  (in {})", dir.display()));
    }
    line
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

impl Proc {
    /// Starts `cmd` with stdin closed.
    pub fn spawn(cmd: &mut Command) -> Proc {
        Self::start(cmd, false)
    }

    /// Starts `cmd` with stdin a pipe the test writes to ([`stdin`](Self::stdin)).
    pub fn spawn_with_stdin(cmd: &mut Command) -> Proc {
        Self::start(cmd, true)
    }

    fn start(cmd: &mut Command, stdin: bool) -> Proc {
        let line = command_line(cmd);
        let mut child = cmd
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        let stdout = Captured::start(child.stdout.take().expect("piped"));
        let stderr = Captured::start(child.stderr.take().expect("piped"));
        Proc {
            stdin: child.stdin.take(),
            child,
            line,
            stdout,
            stderr,
            status: None,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The pipe to the child's stdin (for a child started with
    /// [`spawn_with_stdin`](Self::spawn_with_stdin), until it is closed).
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin
            .as_mut()
            .expect("the child was started with stdin and it is still open")
    }

    /// Closes the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.snapshot()).into_owned()
    }

    /// stdout so far.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.snapshot()).into_owned()
    }

    /// The exit status if the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("`{}`: {e}", self.line));
        }
        self.status
    }

    /// Fails the test with `what`, the command line and the tail of both streams.
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n  command: {}\n  --- stdout (last {TAIL_LINES} lines) ---\n{}\n  --- stderr (last {TAIL_LINES} lines) ---\n{}",
            self.line,
            tail(&self.stdout.snapshot()),
            tail(&self.stderr.snapshot()),
        )
    }

    /// Waits for the child to exit within `deadline`; past it, kills the child and fails
    /// the test. A stdin the test opened stays open: close it first
    /// ([`close_stdin`](Self::close_stdin)) to wait for the end of input.
    pub fn wait(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let status = self
            .child
            .wait_timeout(deadline)
            .unwrap_or_else(|e| panic!("`{}`: {e}", self.line));
        match status {
            Some(s) => {
                self.status = Some(s);
                s
            }
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.fail(&format!(
                    "the child did not exit within {deadline:?}: killed"
                ))
            }
        }
    }

    /// Waits as [`wait`](Self::wait) does, then returns the status and everything the
    /// child printed.
    pub fn finish(mut self, deadline: Duration) -> Output {
        let status = self.wait(deadline);
        Output {
            status,
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
        }
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, …) to the child.
    pub fn signal(&self, signal: &str) {
        let out = run(
            Command::new("kill").args([format!("-{signal}"), self.id().to_string()]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "kill -{signal} {}: {}",
            self.id(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
        }
        self.wait(Duration::from_secs(30));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to its end, stdin closed, within `deadline`; returns its status and output.
pub fn run(cmd: &mut Command, deadline: Duration) -> Output {
    Proc::spawn(cmd).finish(deadline)
}

/// An awaited future with a deadline: past it, the test fails naming `what` it waited for.
pub async fn within<F: std::future::Future>(deadline: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(deadline, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {deadline:?}"),
    }
}

/// [`within`] as a method: `pipeline.run().within(RUN, "the run").await`.
pub trait Deadline: std::future::Future + Sized {
    /// This future with a deadline: past it, the test fails naming `what` it waited for.
    fn within(
        self,
        deadline: Duration,
        what: &str,
    ) -> impl std::future::Future<Output = Self::Output> {
        within(deadline, what, self)
    }
}

impl<F: std::future::Future> Deadline for F {}

/// The deadline of a pipeline run that should take seconds.
pub const RUN: Duration = Duration::from_secs(120);
