//! COM_CHANGE_USER: the proxy re-authenticates the client itself (auth switch to
//! `mysql_native_password` with a fresh nonce), then starts a fresh session as the new user;
//! connections of the old user go back to their pools.

use super::{Error, Session};
use crate::backend::handshake::scramble;
use crate::frontend::users;
use crate::protocol::consts::{cap, code};
use crate::protocol::packet::{read_packet, write_packet};
use tokio::io::AsyncWriteExt;

impl Session {
    pub(super) async fn change_user(&mut self, reply: u8) -> Result<(), Error> {
        let p = &self.cmd[1..];
        let Some(end) = p.iter().position(|&c| c == 0) else {
            let (c, st) = code::ER_UNKNOWN_COM_ERROR;
            return self
                .send_err(reply, c, st, "Malformed COM_CHANGE_USER")
                .await;
        };
        let user = String::from_utf8_lossy(&p[..end]).into_owned();
        let mut rest = &p[end + 1..];
        // Auth data (ignored: the proxy asks again with its own nonce).
        if self.client.caps & cap::SECURE_CONNECTION != 0 {
            let n = usize::from(rest.first().copied().unwrap_or(0));
            rest = rest.get(1 + n..).unwrap_or(&[]);
        } else {
            let n = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            rest = rest.get(n + 1..).unwrap_or(&[]);
        }
        let n = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        let db = String::from_utf8_lossy(&rest[..n]).into_owned();
        rest = rest.get(n + 1..).unwrap_or(&[]);
        let collation = rest.first().copied().filter(|c| *c != 0);

        let nonce = crate::frontend::auth::nonce();
        let mut sw = vec![0xfe];
        sw.extend_from_slice(b"mysql_native_password\0");
        sw.extend_from_slice(&nonce);
        sw.push(0);
        write_packet(&mut self.stream, reply, &sw).await?;
        self.stream.flush().await?;
        let mut answer = Vec::new();
        let seq = read_packet(&mut self.stream, &mut answer, 64 * 1024).await?;
        let seq = seq.wrapping_add(1);
        let cfg = self.ctx.proxy_config();
        let password = users::find(&cfg.users, &user).and_then(|u| users::resolve(&u.secret));
        drop(cfg);
        let ok = password.as_ref().is_some_and(|pw| {
            scramble("mysql_native_password", &nonce, pw).unwrap_or_default() == answer
        });
        let Some(password) = password.filter(|_| ok) else {
            let (c, st) = code::ER_ACCESS_DENIED_ERROR;
            let using = if answer.is_empty() { "NO" } else { "YES" };
            let msg = format!(
                "Access denied for user '{user}'@'{}' (using password: {using})",
                self.client.host
            );
            write_packet(
                &mut self.stream,
                seq,
                &crate::protocol::message::err_payload(c, st, &msg),
            )
            .await?;
            self.stream.flush().await?;
            // A failed change of user ends the session, as on a server.
            return Err(Error::Client(std::io::Error::other(
                "COM_CHANGE_USER denied",
            )));
        };
        self.client.user = user;
        self.client.password = password;
        if let Some(c) = collation {
            self.client.collation = c;
        }
        self.client.database = (!db.is_empty()).then_some(db);
        self.registry_user_changed();
        self.reset_session();
        self.send_ok(seq).await
    }
}
