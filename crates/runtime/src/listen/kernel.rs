//! What the kernel knows of a connection's socket that the server's reads may not have
//! seen yet: they lag while the server is busy with other connections.

use std::os::fd::RawFd;
use std::time::Duration;

/// Whether the client has sent bytes (or its end) that the server has not read.
/// `fd` must be an open socket for the call: the caller's task owns it.
pub(super) fn unread(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer of ours; `fd` is open (above), and a peek that does
    // not wait changes nothing.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n >= 0
}

/// How long ago the last data from the client arrived (TCP_INFO).
#[cfg(target_os = "linux")]
pub(super) fn since_last_data(fd: RawFd) -> Option<Duration> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is as large as `len` says; `fd` is the caller's open socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // SAFETY: zeroed, then filled in by the kernel: every field is an integer.
    let info = unsafe { info.assume_init() };
    (rc == 0).then(|| Duration::from_millis(info.tcpi_last_data_recv.into()))
}

/// Elsewhere, not known: bytes count as arriving when the server sees them.
#[cfg(not(target_os = "linux"))]
pub(super) fn since_last_data(_fd: RawFd) -> Option<Duration> {
    None
}
