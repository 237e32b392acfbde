//! The refresh sidecar's footprint with 20 secrets, against real OpenBao and moto: its
//! steady-state RSS and the CPU one refresh costs (every secret read again, nothing
//! changed), measured against the baseline of the same binary's `init`, which fetches
//! the same 20 secrets once and exits, in the same run.
//!
//! Needs the test venv (scripts/test.sh installs it). Run: `cargo bench --bench refresh`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::free_port;

const SECRETS: usize = 20;
/// How long the sidecar runs at a 1 s interval before and while it is measured.
const WARM_UP: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(30);

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU seconds (user + system) a live process has used, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // fields after the command (which may hold spaces) start after the last ')'
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = rest[11].parse::<f64>().unwrap() + rest[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

/// A `VmRSS`-style field of /proc/<pid>/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `init` of `plan` once: (peak RSS KiB, CPU seconds), from the child's rusage (reaped
/// with `wait4`, which `Child::wait` cannot report).
#[allow(clippy::zombie_processes)]
fn init_once(plan: &str, env: &[(&str, String)]) -> (u64, f64) {
    let out = tempfile::tempdir().unwrap();
    // `INIT_WRAPPER=heaptrack` runs init under a tool (its figures then include the
    // tool's), with this PATH for it.
    let bin = env!("CARGO_BIN_EXE_secret-injector");
    let wrapper = std::env::var("INIT_WRAPPER").ok();
    let mut command = match &wrapper {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let path = wrapper.and(std::env::var("PATH").ok());
    let child = command
        .args(["init", "--out-dir", out.path().to_str().unwrap()])
        .env_clear()
        .envs(path.map(|p| ("PATH", p)))
        .env("SECRET_INJECTOR_PLAN", plan)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    // SAFETY: wait4 on our own unreaped child, with pointers to live locals.
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    assert_eq!(status, 0, "init failed");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), SECRETS);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        usage.ru_maxrss as u64,
        secs(usage.ru_utime) + secs(usage.ru_stime),
    )
}

/// The counter `name` of the sidecar's /metrics.
fn metric(port: u16, name: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(conn, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

struct Sidecar {
    rss_kib: u64,
    peak_kib: u64,
    cpu_per_refresh: f64,
    refreshes: u64,
}

/// The sidecar on `plan` at a 1 s interval: warm up, then measure over [`WINDOW`].
fn sidecar(plan: &str, env: &[(&str, String)]) -> Sidecar {
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_secret-injector"))
        .args([
            "refresh",
            "--interval=1s",
            "--out-dir",
            out.path().to_str().unwrap(),
        ])
        .arg(format!("--probe-listen=127.0.0.1:{port}"))
        .env_clear()
        .env("SECRET_INJECTOR_PLAN", plan)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(WARM_UP);
    let (cpu0, n0) = (
        cpu_seconds(pid),
        metric(port, "secret_injector_refresh_refreshes_total").unwrap(),
    );
    std::thread::sleep(WINDOW);
    let (cpu1, n1) = (
        cpu_seconds(pid),
        metric(port, "secret_injector_refresh_refreshes_total").unwrap(),
    );
    let rss_kib = status_kib(pid, "VmRSS");
    let peak_kib = status_kib(pid, "VmHWM");
    // SAFETY: kill(2) with a pid this bench spawned and has not reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let refreshes = n1 - n0;
    assert!(refreshes >= 20, "only {refreshes} refreshes in {WINDOW:?}");
    Sidecar {
        rss_kib,
        peak_kib,
        cpu_per_refresh: (cpu1 - cpu0) / refreshes as f64,
        refreshes,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let stores = rt.block_on(support::bench::stores(SECRETS));
    let plan = |provider: &str, path: &str| support::bench::plan(provider, path, SECRETS);
    let vault_env = stores.vault_env(stores.bao.addr.clone());
    let aws_env = support::bench::aws_env(stores.moto.url.clone());
    println!(
        "\nrefresh sidecar with {SECRETS} secrets at a 1 s interval, measured over {WINDOW:?} after {WARM_UP:?}; baseline: init of the same secrets, once"
    );
    println!(
        "{:<34} {:>12} {:>12} {:>16} {:>16} {:>14}",
        "store", "sidecar RSS", "sidecar peak", "CPU per refresh", "init peak RSS", "init CPU"
    );
    for (name, plan, env) in [
        (
            "vault (KV v2, 20 reads)",
            plan("vault", "secret/data/bench"),
            &vault_env,
        ),
        (
            "aws (1 BatchGetSecretValue)",
            plan("aws", "bench"),
            &aws_env,
        ),
    ] {
        let (init_peak, init_cpu) = init_once(&plan, env);
        let s = sidecar(&plan, env);
        println!(
            "{:<34} {:>8.1} MiB {:>8.1} MiB {:>13.2} ms {:>12.1} MiB {:>11.1} ms   ({} refreshes; RSS {:.2}x init's peak; a refresh {:.2}x init's CPU)",
            name,
            s.rss_kib as f64 / 1024.0,
            s.peak_kib as f64 / 1024.0,
            s.cpu_per_refresh * 1e3,
            init_peak as f64 / 1024.0,
            init_cpu * 1e3,
            s.refreshes,
            s.rss_kib as f64 / init_peak as f64,
            s.cpu_per_refresh / init_cpu,
        );
    }
}
