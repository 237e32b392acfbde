//! Fetching 20 secrets through a proxy that adds 50 ms to every request, as the injected
//! init container does it: `--concurrency 1` (sequential, the baseline) against the
//! default concurrency, measured in the same run against real OpenBao and moto. Prints
//! wall times, the ratio, and wall time in round trips (RTT = 50 ms).
//!
//! Needs the test venv (scripts/test.sh installs it). Run: `cargo bench --bench fetch`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::TcpProxy;

const RTT: Duration = Duration::from_millis(50);
const SECRETS: usize = 20;
const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Timing {
    wall: Duration,
    /// the fetch phase alone (after login, until every value is in memory)
    fetch: Duration,
    /// process start until the files are written (before the token is revoked)
    written: Duration,
}

fn run_init(plan: &str, env: &[(&str, String)], concurrency: usize) -> Timing {
    let out_dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_secret-injector-agent"))
        .args(["init", "--out-dir", out_dir.path().to_str().unwrap()])
        .arg(format!("--concurrency={concurrency}"))
        .env_clear()
        .env("SECRET_INJECTOR_PLAN", plan)
        .env("RUST_LOG", "info")
        .env("SECRET_INJECTOR_LOG_FORMAT", "json")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), SECRETS);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ready: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "secrets ready")
        .expect("a secrets ready line");
    let ms = |k: &str| Duration::from_millis(ready[k].as_u64().unwrap());
    Timing {
        wall: elapsed,
        fetch: ms("fetch_ms"),
        written: ms("written_ms"),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let stores = rt.block_on(support::bench::stores(SECRETS));
    let bao_proxy = TcpProxy::start(stores.bao.port, Duration::ZERO, RTT);
    let moto_proxy = TcpProxy::start(stores.moto.port, Duration::ZERO, RTT);
    let aws_plan = support::bench::plan("aws", "bench", SECRETS);
    let vault_env = stores.vault_env(format!("http://127.0.0.1:{}", bao_proxy.port));
    let aws_env = support::bench::aws_env(format!("http://127.0.0.1:{}", moto_proxy.port));

    let plan20 = support::bench::plan("vault", "secret/data/bench", SECRETS);
    // one secret per call: an explicit version stage is not batchable
    let aws_single_plan = aws_plan.replace("#v", "?version-stage=AWSCURRENT#v");
    let mut rows = Vec::new();
    for (name, plan, env, conc) in [
        (
            "vault, sequential (--concurrency 1)",
            &plan20,
            &vault_env,
            1,
        ),
        (
            "vault, concurrent (--concurrency 20)",
            &plan20,
            &vault_env,
            20,
        ),
        ("aws, BatchGetSecretValue (1 call)", &aws_plan, &aws_env, 20),
        (
            "aws, GetSecretValue one by one",
            &aws_single_plan,
            &aws_env,
            1,
        ),
        (
            "aws, GetSecretValue concurrent",
            &aws_single_plan,
            &aws_env,
            20,
        ),
    ] {
        let runs: Vec<Timing> = (0..RUNS).map(|_| run_init(plan, env, conc)).collect();
        let med = |f: fn(&Timing) -> Duration| median(runs.iter().map(f).collect());
        rows.push((name, med(|t| t.fetch), med(|t| t.written), med(|t| t.wall)));
    }
    let rtts = |d: Duration| d.as_secs_f64() / RTT.as_secs_f64();
    println!(
        "\nfetch {SECRETS} secrets through a proxy adding {} ms per request (RTT), median of {RUNS} runs",
        RTT.as_millis()
    );
    println!(
        "{:<38} {:>14} {:>18} {:>14}",
        "variant", "fetch phase", "start->written", "process wall"
    );
    for (name, fetch, written, wall) in &rows {
        println!(
            "{:<38} {:>7.0} ms {:>4.1}R {:>11.0} ms {:>4.1}R {:>7.0} ms {:>4.1}R",
            name,
            fetch.as_secs_f64() * 1e3,
            rtts(*fetch),
            written.as_secs_f64() * 1e3,
            rtts(*written),
            wall.as_secs_f64() * 1e3,
            rtts(*wall),
        );
    }
    let ratio = rows[0].1.as_secs_f64() / rows[1].1.as_secs_f64();
    println!(
        "fetch phase: concurrent is {ratio:.1}x faster than sequential (same run); target < 3 RTT"
    );
    println!("(vault wall time = process start + login + fetch + write + token revoke)");
}
