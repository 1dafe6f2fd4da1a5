//! The workspace's programs and other processes in tests: where the built programs are, a clean
//! environment, timeouts, signals, exit codes and collected output.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The path of one of the workspace's programs, built by `cargo build --workspace --bins`.
///
/// The tests of the `tests/` package cannot use `CARGO_BIN_EXE_*` (cargo sets those only in the
/// package that owns the binary), so the programs are found next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something listens on `addr`; panics naming `what` after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` so that it is killed when this test process ends, however it ends (a static
/// value is never dropped, and a panicking or killed test binary runs no destructor).
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, so the child is forked
/// from a thread that lives as long as the process.
pub fn spawn_tied_to_this_process(mut cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("child-keeper".into()).spawn(move || {
        // SAFETY: prctl is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let _ = tx.send(cmd.spawn());
        loop {
            std::thread::park();
        }
    })?;
    rx.recv().map_err(std::io::Error::other)?
}

/// A command for `program` with nothing of the test's environment but `PATH` and `RUST_LOG`
/// (`TEST_RUST_LOG`, default `info`), plus `env`; stdout and stderr piped.
pub fn clean_command(program: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a program to completion with a clean environment plus `env`, killing it after `timeout`.
pub fn run(program: &Path, args: &[&str], env: &[(String, String)], timeout: Duration) -> Output {
    let cmd = clean_command(program, args, env);
    run_command(cmd, &format!("{} {args:?}", program.display()), timeout)
}

/// Runs `cmd` to completion (its stdout and stderr piped), killing it after `timeout`.
pub fn run_command(mut cmd: Command, what: &str, timeout: Duration) -> Output {
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    wait_output(child, what, timeout)
}

/// Waits for a started child (its stdout and stderr piped), collecting its output; kills it after
/// `timeout` and fails naming `what`.
pub fn wait_output(mut child: Child, what: &str, timeout: Duration) -> Output {
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.map(|t| t.join().unwrap_or_default()).unwrap_or_default();
            panic!(
                "{what} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let join =
        |t: Option<std::thread::JoinHandle<Vec<u8>>>| t.map(|t| t.join().unwrap_or_default()).unwrap_or_default();
    Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

/// Reads a stream to its end on a thread of its own (a full pipe would stall the child).
pub(crate) fn read_all(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        buf
    })
}

/// Asserts a program run ended with `code`, showing its output otherwise.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}, got {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The exit status's code, or 128+signal for a signal death.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Sends a signal to a child.
pub fn signal(child: &Child, sig: i32) {
    signal_pid(child.id(), sig);
}

/// Sends a signal to a process.
pub fn signal_pid(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Waits for a child to exit, up to `timeout`; returns its exit code (128+signal for a signal).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Some(exit_code(status));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads lines of a child's stderr in the background, returning them when asked.
#[derive(Debug, Clone)]
pub struct LineCollector(Arc<Mutex<Vec<String>>>);

impl LineCollector {
    /// Starts collecting `stream`.
    pub fn new(stream: impl std::io::Read + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        Self(lines)
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

/// Waits until a collected line contains `needle`, up to `timeout`.
pub fn wait_for_line(lines: &LineCollector, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if lines.lines().iter().any(|l| l.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A plain `GET` over HTTP/1.0 on loopback, for health checks before any runtime exists: the
/// status code and the body, or `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}
