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

use serde_json::json;
use support::{Moto, OpenBao, TcpProxy, TokenSigner};

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
    let out = Command::new(env!("CARGO_BIN_EXE_secret-injector"))
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
    let signer = TokenSigner::new();
    let (bao, moto) = rt.block_on(async {
        let bao = OpenBao::start().await;
        for i in 0..SECRETS {
            bao.kv2_put(&format!("bench/s{i}"), json!({"v": format!("value-{i}")}))
                .await;
        }
        bao.policy(
            "bench",
            "path \"secret/data/bench/*\" { capabilities = [\"read\"] }",
        )
        .await;
        bao.setup_jwt(
            "jwt",
            &signer.public_pem,
            &[("bench", "bench", "app", "bench")],
        )
        .await;
        let moto = Moto::start().await;
        for i in 0..SECRETS {
            moto.create(&format!("bench/s{i}"), &json!({"v": i}).to_string())
                .await;
        }
        (bao, moto)
    });
    let bao_proxy = TcpProxy::start(bao.port, Duration::ZERO, RTT);
    let moto_proxy = TcpProxy::start(moto.port, Duration::ZERO, RTT);
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, signer.token("bench", "app", "vault")).unwrap();

    let vault_plan = |n: usize| {
        let secrets: serde_json::Map<_, _> = (0..n)
            .map(|i| {
                (
                    format!("s{i}"),
                    json!(format!("vault:secret/data/bench/s{i}#v")),
                )
            })
            .collect();
        let files: serde_json::Map<_, _> =
            (0..n).map(|i| (format!("s{i}"), json!(0o400))).collect();
        json!({"secrets": secrets, "files": files}).to_string()
    };
    let aws_plan = {
        let secrets: serde_json::Map<_, _> = (0..SECRETS)
            .map(|i| (format!("s{i}"), json!(format!("aws:bench/s{i}#v"))))
            .collect();
        let files: serde_json::Map<_, _> = (0..SECRETS)
            .map(|i| (format!("s{i}"), json!(0o400)))
            .collect();
        json!({"secrets": secrets, "files": files}).to_string()
    };
    let vault_env = vec![
        ("VAULT_ADDR", format!("http://127.0.0.1:{}", bao_proxy.port)),
        ("SECRET_INJECTOR_VAULT_ROLE", "bench".to_string()),
        ("SECRET_INJECTOR_VAULT_AUTH_METHOD", "jwt".to_string()),
        ("SECRET_INJECTOR_VAULT_AUTH_PATH", "jwt".to_string()),
        (
            "SECRET_INJECTOR_VAULT_TOKEN_FILE",
            token_file.to_str().unwrap().to_string(),
        ),
    ];
    let aws_env = vec![
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", moto_proxy.port),
        ),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
    ];

    let plan20 = vault_plan(SECRETS);
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
