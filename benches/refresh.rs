//! The refresh sidecar's footprint with 20 secrets, against real OpenBao (over HTTP and
//! over TLS) and moto (plain HTTP: it has no TLS a client could verify): its
//! steady-state RSS and the CPU one refresh costs (every secret read again, nothing
//! changed), measured against the baseline of the same binary's `init`, which fetches
//! the same 20 secrets once and exits, in the same run.
//!
//! Needs the test venv (scripts/test.sh installs it). Run: `cargo bench --bench refresh`.
//! `AGENT_BIN=PATH` measures another build of the agent (the image's static musl one,
//! say) instead of the one cargo built for the bench.

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

/// Set when this bench binary runs as the launcher of one `init` (see [`launch`]).
const LAUNCHER_ENV: &str = "REFRESH_BENCH_LAUNCHER";

/// The launcher: runs its arguments as a command and prints the command's peak RSS
/// (KiB) and CPU seconds from `wait4`'s rusage, and its own peak RSS at the spawn.
///
/// Why not spawn init from the bench itself: a child spawned with `vfork` (as
/// `Command` does) enters `exec` in its parent's address space, and Linux keeps that
/// space's high-water mark in the child's `ru_maxrss`. Spawned by the bench, init's
/// peak would read as at least the bench's own (8 MiB here). This process has only
/// started when it spawns, and says how small it was.
fn launch() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let floor_kib = status_kib(std::process::id(), "VmHWM");
    let child = Command::new(&args[0])
        .args(&args[1..])
        .env_remove(LAUNCHER_ENV)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    // SAFETY: wait4 on our own unreaped child, with pointers to live locals.
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    println!(
        "{} {} {floor_kib}",
        usage.ru_maxrss,
        secs(usage.ru_utime) + secs(usage.ru_stime)
    );
    std::process::exit(if status == 0 { 0 } else { 1 });
}

/// The agent measured: `AGENT_BIN`, or the bench's own build.
fn agent_bin() -> String {
    std::env::var("AGENT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_secret-injector-agent").to_string())
}

/// `init` of `plan` once, through [`launch`]: (peak RSS KiB, CPU seconds).
fn init_once(plan: &str, env: &[(&str, String)]) -> (u64, f64) {
    let out = tempfile::tempdir().unwrap();
    // `INIT_WRAPPER=heaptrack` runs init under a tool (its figures then include the
    // tool's), with this PATH for it.
    let bin = agent_bin();
    let wrapper = std::env::var("INIT_WRAPPER").ok();
    let path = wrapper.as_ref().and(std::env::var("PATH").ok());
    let output = Command::new(std::env::current_exe().unwrap())
        .args(wrapper)
        .args([&bin, "init", "--out-dir", out.path().to_str().unwrap()])
        .env_clear()
        .env(LAUNCHER_ENV, "1")
        .envs(path.map(|p| ("PATH", p)))
        .env("SECRET_INJECTOR_PLAN", plan)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), SECRETS);
    let text = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let (peak, cpu, floor): (u64, f64, u64) = (
        fields[0].parse().unwrap(),
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
    );
    assert!(
        peak > floor,
        "init's peak ({peak} KiB) is no more than the launcher's ({floor} KiB): not measured"
    );
    (peak, cpu)
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
    let mut child = Command::new(agent_bin())
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
    if std::env::var_os(LAUNCHER_ENV).is_some() {
        return launch();
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let stores = rt.block_on(support::bench::stores(SECRETS));
    let plan = |provider: &str, path: &str| support::bench::plan(provider, path, SECRETS);
    let vault_env = stores.vault_env(stores.bao.addr.clone());
    let vault_tls_env = stores.vault_tls_env();
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
            "vault over TLS (as in a cluster)",
            plan("vault", "secret/data/bench"),
            &vault_tls_env,
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
