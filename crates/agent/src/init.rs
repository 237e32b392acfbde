//! `secret-injector init`: runs in the injected init container, as a pipeline of named
//! steps that a refresh loop can run again: [`Stores::login`], [`Stores::fetch`] (keyed
//! by `SecretRef`), [`assemble`] (pure), [`write`] (the files, the env file and the
//! wrapper: all in place, or none of them), and [`finish`] (revoke the Vault token,
//! unless leases depend on it).
//!
//! Everything comes from args and env, so a person can run it by hand to debug.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::assemble::{Assembled, assemble};
use crate::fetch::Budget;
use crate::providers::AgentError;
use crate::providers::vault::{Lease, Vault};
use crate::stop;
use runtime::files::{Committed, Staged};

/// What init runs with (decoded from its args and env by the contract).
pub use contract::args::InitOptions as Options;

/// Log in, fetch, assemble, write, finish. The error is the one line to print.
/// When `stop` (SIGTERM) completes first, nothing is written, the Vault token is
/// revoked with whatever leases it made, and the error is [`stop::STOPPED`].
pub async fn run(
    opts: Options,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let start = Instant::now();
    let budget = Budget::starting_now(opts.deadline, opts.concurrency, opts.attempt_timeout);
    let plan = &opts.plan;
    remove_leftovers(&opts);
    tokio::pin!(stop);
    let Some(stores) = stop::login(plan, &opts.stores, budget, stop.as_mut()).await? else {
        return Err(AgentError::permanent(stop::STOPPED));
    };
    let logged_in = start.elapsed();
    let work = async {
        let fetched = stores.fetch(plan, budget).await?;
        let fetch_done = start.elapsed();
        let assembled = assemble(plan, &fetched.values)?;
        write(&assembled, opts.out_dir.as_deref(), opts.env_dir.as_deref())?;
        for f in &assembled.files {
            // no hash of the content: for short values a hash is as good as the value
            tracing::info!(file = %f.name, mode = %format!("{:04o}", f.mode), bytes = f.bytes.len(), "wrote");
        }
        tracing::info!(
            files = assembled.files.len(),
            env_vars = assembled.env_vars,
            login_ms = logged_in.as_millis() as u64,
            fetch_ms = (fetch_done - logged_in).as_millis() as u64,
            written_ms = start.elapsed().as_millis() as u64,
            "secrets ready"
        );
        Ok::<_, AgentError>(fetched.leases)
    };
    // The files are written in one synchronous step: a stop either comes before it
    // (nothing written) or after the whole set is in place.
    let result = tokio::select! {
        result = work => result,
        _ = stop => {
            stop::revoke(&stores).await;
            return Err(AgentError::permanent(stop::STOPPED));
        }
    };
    match (&stores.vault, result) {
        (Some(v), Ok(leases)) => {
            finish(v, &leases).await;
            Ok(())
        }
        // After a failure the token is revoked with any leases it made, so a
        // crash-looping pod leaves nothing behind.
        (Some(v), Err(e)) => {
            if let Err(re) = v.revoke_self().await {
                tracing::warn!(error = %re, "could not revoke the Vault token after the failure");
            }
            Err(e)
        }
        (None, result) => result.map(|_| ()),
    }
}

/// Write the files into `out_dir` and, in env mode, the env file and (unless the
/// kubelet reads the variables) the wrapper into `env_dir`: all of them, or none.
/// Everything is staged first ([`stage`]), and only then renamed into place
/// ([`commit`]); a failure at any step removes what this run wrote, so no value is left
/// behind.
pub fn write(
    assembled: &Assembled,
    out_dir: Option<&Path>,
    env_dir: Option<&Path>,
) -> Result<(), AgentError> {
    commit(stage(assembled, out_dir, env_dir)?).map(drop)
}

/// Stage everything [`write`] puts in place: env mode's part ([`stage_env`]), then the
/// files. Nothing is in place until [`commit`]; dropped, every temp file is removed.
pub fn stage(
    assembled: &Assembled,
    out_dir: Option<&Path>,
    env_dir: Option<&Path>,
) -> Result<Staged, AgentError> {
    let mut staged = stage_env(assembled, env_dir)?;
    if !assembled.files.is_empty() {
        let dir =
            out_dir.ok_or_else(|| AgentError::permanent("the plan has files but no --out-dir"))?;
        staged.files(dir, &assembled.files).map_err(|e| {
            AgentError::permanent(format!(
                "cannot write the secret files in {}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(staged)
}

/// Stage env mode's part in `env_dir`: the env file and the wrapper. Fails first, with
/// nothing written, when the env file cannot be made (`env_error`) or the wrapper is
/// missing.
pub fn stage_env(assembled: &Assembled, env_dir: Option<&Path>) -> Result<Staged, AgentError> {
    if let Some(e) = &assembled.env_error {
        return Err(AgentError::permanent(e.clone()));
    }
    let mut staged = Staged::new();
    let Some(env_file) = &assembled.env_file else {
        return Ok(staged);
    };
    let dir = env_dir.ok_or_else(|| AgentError::permanent("env-mode references need --env-dir"))?;
    let wrapper_error = |e: runtime::Error| {
        AgentError::permanent(format!(
            "cannot copy the env-mode wrapper into {}: {e}",
            dir.display()
        ))
    };
    // A missing wrapper fails before any value is written, even to a temp file.
    let wrapper = if assembled.wrapper {
        Some(find_wrapper().map_err(wrapper_error)?)
    } else {
        None
    };
    staged
        .files(dir, std::slice::from_ref(env_file))
        .map_err(|e| {
            AgentError::permanent(format!(
                "cannot write the env file in {}: {e}",
                dir.display()
            ))
        })?;
    if let Some(wrapper) = wrapper {
        // It keeps the name the app's command was rewritten with
        // ([`contract::names::EXEC_BINARY`]).
        staged
            .copy(&wrapper, &dir.join("bin"), "secret-injector", 0o555)
            .map_err(wrapper_error)?;
    }
    Ok(staged)
}

/// Put what [`stage`] or [`stage_env`] staged in place; if that fails, none of it is.
pub fn commit(staged: Staged) -> Result<Committed, AgentError> {
    staged
        .commit()
        .map_err(|e| AgentError::permanent(format!("cannot put the secrets in place: {e}")))
}

/// Remove what a run killed while writing (an init container OOM-killed, say) left in
/// the pod's directories: temp files, which may hold values, and generations never
/// switched to ([`runtime::files::remove_leftovers`]). Before anything else, so that
/// even a run that fails removes them.
pub fn remove_leftovers(opts: &Options) {
    let bin = opts.env_dir.as_ref().map(|d| d.join("bin"));
    for dir in [opts.out_dir.as_ref(), opts.env_dir.as_ref(), bin.as_ref()]
        .into_iter()
        .flatten()
    {
        runtime::files::remove_leftovers(dir);
    }
}

/// Revoke the token unless leases depend on it (revoking it would revoke them).
pub async fn finish(
    v: &Vault,
    leases: &std::collections::HashMap<contract::reference::SecretRef, Lease>,
) {
    if !leases.is_empty() {
        tracing::info!(
            leases = leases.len(),
            "keeping the Vault token: revoking it would revoke the dynamic credentials; they end when the token or the lease expires, whichever is first"
        );
        return;
    }
    match v.revoke_self().await {
        Ok(()) => tracing::debug!("revoked the Vault token"),
        Err(e) => {
            tracing::warn!(error = %e, "could not revoke the Vault token; it expires with its TTL")
        }
    }
}

/// The env-mode wrapper's binary, shipped next to this one in the image: `exec` alone,
/// a small fraction of this binary's size.
pub const WRAPPER_BINARY: &str = "secret-injector-exec";

/// The env-mode wrapper ([`WRAPPER_BINARY`], next to this binary), which `init` copies
/// to `<env-dir>/bin/secret-injector` for env-mode containers: the app's image has
/// neither it nor a shell to copy it with.
fn find_wrapper() -> runtime::Result<PathBuf> {
    let me = std::env::current_exe().map_err(runtime::Error::io("find this binary"))?;
    let wrapper = me.with_file_name(WRAPPER_BINARY);
    if !wrapper.is_file() {
        return Err(runtime::Error::io(format!(
            "find {} (the image ships it next to {}; see the Dockerfile)",
            wrapper.display(),
            me.display()
        ))(std::io::ErrorKind::NotFound.into()));
    }
    Ok(wrapper)
}
