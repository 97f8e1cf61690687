//! `INFO`: the server, clients, persistence, stats and keyspace sections, in Redis's
//! `field:value` text.
//!
//! Invariant: every figure is read from the server's counters or the store at the time
//! of the call; nothing is made up (fields Redis has and this server has not are left
//! out rather than filled with zeros).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::server::Shared;

/// The text of `INFO [section ...]`.
pub(crate) fn info(sh: &Shared, sections: &[String], clients: usize) -> pickleshelf::Result<String> {
    let all = sections.is_empty() || sections.iter().any(|s| matches!(s.as_str(), "all" | "default" | "everything"));
    let want = |s: &str| all || sections.iter().any(|x| x == s);
    let mut t = String::new();
    let s = &sh.stats;
    if want("server") {
        let up = sh.started.elapsed().as_secs();
        let _ = write!(
            t,
            "# Server\r\nredis_version:{}\r\npickleshelf_version:{}\r\nredis_mode:standalone\r\nos:{}\r\n\
             arch_bits:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\n\
             store:{}\r\n\r\n",
            crate::REDIS_VERSION,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            usize::BITS,
            std::process::id(),
            sh.port,
            up / 86_400,
            sh.shelf.path().display(),
        );
    }
    if want("clients") {
        let _ = write!(t, "# Clients\r\nconnected_clients:{clients}\r\nmaxclients:{}\r\n\r\n", sh.config.maxclients);
    }
    if want("persistence") {
        let _ = write!(
            t,
            "# Persistence\r\nloading:0\r\nappendonly:1\r\nappendfsync:{}\r\nsync_failures:{}\r\n\r\n",
            sh.config.appendfsync,
            sh.syncer.failures.load(Ordering::Relaxed)
        );
    }
    if want("stats") {
        let _ = write!(
            t,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\n\
             keyspace_hits:{}\r\nkeyspace_misses:{}\r\nauth_failures:{}\r\nprotocol_errors:{}\r\n\
             timed_out_connections:{}\r\n\r\n",
            s.connections.load(Ordering::Relaxed),
            s.commands.load(Ordering::Relaxed),
            s.rejected.load(Ordering::Relaxed),
            s.hits.load(Ordering::Relaxed),
            s.misses.load(Ordering::Relaxed),
            s.auth_failures.load(Ordering::Relaxed),
            s.protocol_errors.load(Ordering::Relaxed),
            s.timeouts.load(Ordering::Relaxed),
        );
    }
    if want("keyspace") {
        let keys = sh.shelf.len()?;
        t.push_str("# Keyspace\r\n");
        if keys > 0 {
            let _ = write!(t, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
        }
        t.push_str("\r\n");
    }
    Ok(t)
}
