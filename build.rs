//! Optimized binaries (`release`, `agent`) are linked with packed relative relocations (DT_RELR: 0.9 MB of
//! `.rela.dyn` becomes 12 KB, and a process no longer reads it all at start) and
//! identical code folding, by Rust's bundled LLD. Only where that was tried and works:
//!
//! - `x86_64-unknown-linux-gnu`, built for the host itself, whose glibc loads DT_RELR
//!   (2.36+: Debian 12, Ubuntu 24.04); Rust links with its LLD there already (the
//!   default since Rust 1.90). Such a binary needs glibc 2.36+ wherever it runs.
//! - `x86_64-unknown-linux-musl` (the image): a static PIE whose start code, from Rust's
//!   bundled musl, applies DT_RELR itself; LLD replaces the system linker, for `--icf`.
//!
//! Anything else (another target, a linker of one's own, a toolchain without LLD)
//! links as before. See docs/performance.md, "Binary size". Each binary of this package
//! (the webhook, the agent, the exec wrapper) is linked so.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (target, host) = (var("TARGET"), var("HOST"));
    let own_linker =
        !var("RUSTC_LINKER").is_empty() || var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    // An optimized build: `release`, and the `agent` profile, which inherits `dev`.
    if var("OPT_LEVEL") == "0" || own_linker {
        return;
    }
    let Some(gcc_ld) = bundled_lld(&host) else {
        return;
    };
    match target.as_str() {
        "x86_64-unknown-linux-gnu" if target == host && glibc_loads_relr() => {}
        "x86_64-unknown-linux-musl" => {
            println!("cargo:rustc-link-arg-bins=-B{}", gcc_ld.display());
            println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
        }
        _ => return,
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
}

/// The directory holding the toolchain's `ld.lld` for the C compiler driver (`-B`), if
/// it ships one (a distribution's rustc may link with the system's `cc` and GNU ld,
/// which has no `--icf`).
fn bundled_lld(host: &str) -> Option<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = PathBuf::from(sysroot)
        .join("lib/rustlib")
        .join(host)
        .join("bin/gcc-ld");
    dir.join("ld.lld").exists().then_some(dir)
}

/// `getconf GNU_LIBC_VERSION` says "glibc 2.36" or later.
fn glibc_loads_relr() -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text.trim().strip_prefix("glibc ").unwrap_or("").split('.');
    let major: u32 = version.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor: u32 = version.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (major, minor) >= (2, 36)
}
