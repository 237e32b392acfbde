//! PostgreSQL from Debian's packages, for Vault's dynamic database credentials.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A throwaway PostgreSQL cluster from Debian's packages (what Vault's database engine
/// issues credentials for), on a free loopback port. Password (scram) auth over TCP, so
/// a login proves the password; run as the `postgres` user when the tests run as root,
/// because the server refuses to run as root.
pub struct Postgres {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    pub superuser_password: String,
}

impl Postgres {
    /// A server binary of the newest PostgreSQL under /usr/lib/postgresql (Debian's
    /// layout), else from `PATH`.
    fn bin(name: &str) -> PathBuf {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
                Some((version, e.path().join("bin").join(name)))
            })
            .filter(|(_, p)| p.exists())
            .collect();
        found.sort();
        if let Some((_, path)) = found.pop() {
            return path;
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("{name} is missing: run scripts/test.sh, which installs Debian's postgresql")
            })
    }

    /// `cmd` as the `postgres` user when we are root.
    fn command(program: PathBuf) -> Command {
        // The effective uid, from the `Uid:` line of /proc/self/status.
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    pub async fn start() -> Postgres {
        // Under /tmp whatever TMPDIR says: the postgres user must reach it.
        let dir = tempfile::Builder::new()
            .prefix("secret-injector-pg")
            .tempdir_in("/tmp")
            .unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        let superuser_password = "pg-super-Xk29".to_string();
        std::fs::write(&pwfile, &superuser_password).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // the postgres user must reach the directory when we run as root
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let out = Self::command(Self::bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                // independent of the machine's LANG and installed locales
                "--no-locale",
                "--encoding=UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..5 {
            let port = free_port();
            let mut child = Self::command(Self::bin("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-k")
                .arg(dir.path())
                .args(["-c", "fsync=off"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start postgres");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let ready = Command::new(Self::bin("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    return Postgres {
                        child,
                        _dir: dir,
                        port,
                        superuser_password,
                    };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Self::stop(&data);
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("postgres did not start");
    }

    /// Stop the server fast. Killing the `runuser` wrapper would orphan it.
    fn stop(data: &std::path::Path) {
        let _ = Self::command(Self::bin("pg_ctl"))
            .arg("-D")
            .arg(data)
            .args(["stop", "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Run `sql` with psql as `user`/`password` over TCP; stdout, or the error.
    pub fn psql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(Self::bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-tAX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        Self::stop(&self._dir.path().join("data"));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
