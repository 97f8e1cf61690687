//! Served stores: a STORE argument that is an address, `redis://HOST:PORT` or
//! `unix:///PATH`, names a store another process serves (`pickleshelf serve`); `get`,
//! `put`, `rm`, `ls` and `verify` reach it through the Redis protocol
//! ([`RemoteShelf`]), so a script works the same on a store it opens and on one a
//! running application holds.
//!
//! Invariant: an address is never opened as a directory: commands that need the store's
//! files (stats, gc, export, checkpoints, memo, repair...) refuse it, naming the commands
//! that take one.

use std::path::Path;

use anyhow::Context;
use pickleshelf_server::RemoteShelf;

/// The commands that accept a served store, for error messages.
pub const SERVED_COMMANDS: &str = "get, put, rm, ls and verify";

/// The environment variable holding the server's password when the address has none
/// (redis-cli's own).
pub const PASSWORD_ENV: &str = "REDISCLI_AUTH";

/// The address `store` is, when it is one.
pub fn address(store: &Path) -> Option<&str> {
    store.to_str().filter(|s| s.starts_with("redis://") || s.starts_with("unix://"))
}

/// Connects to the served store at `address`, with the password the address gives, or
/// else the one in `REDISCLI_AUTH`, and checks that the server answers (`PING`).
pub fn connect(address: &str) -> anyhow::Result<RemoteShelf> {
    let url = match std::env::var(PASSWORD_ENV) {
        Ok(pw) if !pw.is_empty() && !has_password(address) => with_password(address, &pw),
        _ => address.to_owned(),
    };
    let context = || format!("{}: cannot use the served store", shown(address));
    let remote = RemoteShelf::connect(&url).with_context(context)?;
    // A server that wants a password not given answers NOAUTH to the first command: say so
    // here, naming the address, rather than at the command's own request.
    remote.command(&[b"PING"]).with_context(context)?;
    Ok(remote)
}

/// True when the address carries a password (`redis://:PW@...`, `unix://...?password=`).
fn has_password(address: &str) -> bool {
    match address.strip_prefix("redis://") {
        Some(rest) => rest.contains('@'),
        None => address.contains("?password="),
    }
}

fn with_password(address: &str, pw: &str) -> String {
    match address.strip_prefix("redis://") {
        Some(rest) => format!("redis://:{pw}@{rest}"),
        None => format!("{address}?password={pw}"),
    }
}

/// The address as messages show it: without its password.
pub fn shown(address: &str) -> String {
    if let Some(rest) = address.strip_prefix("redis://")
        && let Some((_, host)) = rest.rsplit_once('@')
    {
        return format!("redis://{host}");
    }
    match address.split_once("?password=") {
        Some((path, _)) => path.to_owned(),
        None => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_their_passwords() {
        assert_eq!(address(Path::new("redis://127.0.0.1:6379")), Some("redis://127.0.0.1:6379"));
        assert_eq!(address(Path::new("unix:///run/s.sock")), Some("unix:///run/s.sock"));
        assert_eq!(address(Path::new("state.db")), None);
        assert_eq!(address(Path::new("./redis://x")), None);
        assert_eq!(shown("redis://:secret@127.0.0.1:1"), "redis://127.0.0.1:1");
        assert_eq!(shown("unix:///s.sock?password=secret"), "unix:///s.sock");
        assert!(has_password("redis://default:pw@h:1") && !has_password("redis://h:1"));
        assert_eq!(with_password("redis://h:1", "pw"), "redis://:pw@h:1");
        assert_eq!(with_password("unix:///s", "pw"), "unix:///s?password=pw");
    }
}
