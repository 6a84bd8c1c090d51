//! The shared port: every worker binds its own socket with SO_REUSEPORT and the kernel
//! spreads new connections across them.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `addr` with SO_REUSEADDR + SO_REUSEPORT and a deep accept queue.
///
/// # Errors
/// The address is taken by a socket without SO_REUSEPORT (another program), or invalid.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(bind_reuseport_std(addr)?)
}

/// As [`bind_reuseport`], without a runtime.
///
/// # Errors
/// As [`bind_reuseport`].
pub fn bind_reuseport_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Raises the soft open-file limit to the hard limit: 10,000 keep-alive connections
/// need more than the usual 1,024 descriptors.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            tracing::debug!(from = soft, to = hard, "raised open-file limit");
        }
    }
}
