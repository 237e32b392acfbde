//! Release binaries on x86_64 glibc are linked with packed relative relocations (DT_RELR:
//! 0.9 MB of `.rela.dyn` becomes 12 KB, and a process no longer reads it all at start)
//! and identical code folding. Only where both work: a release build for the host
//! itself, with Rust's bundled LLD as the linker (the default there since Rust 1.90)
//! and a glibc that loads DT_RELR (2.36+: Debian 12, Ubuntu 24.04). Such a binary needs
//! glibc 2.36+ wherever it runs. Anything else links as before. See
//! docs/performance.md, "Binary size".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let target = var("TARGET");
    let own_linker =
        !var("RUSTC_LINKER").is_empty() || var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if var("PROFILE") != "release"
        || target != "x86_64-unknown-linux-gnu"
        || var("HOST") != target
        || own_linker
        || !bundled_lld(&target)
        || !glibc_loads_relr()
    {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
}

/// The toolchain ships LLD for `target` (a distribution's rustc may link with the
/// system's `cc` and GNU ld, which has no `--icf`).
fn bundled_lld(target: &str) -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::path::Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("bin/gcc-ld/ld.lld")
        .exists()
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
