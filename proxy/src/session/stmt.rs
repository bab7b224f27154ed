//! Prepared statements (binary protocol): placeholder until the lazy per-backend preparation
//! lands.

use super::{Error, Session};
use crate::protocol::consts::code;

/// A statement the client prepared.
pub struct Stmt {}

impl Session {
    pub(super) async fn stmt_prepare(&mut self) -> Result<(), Error> {
        let (c, st) = code::ER_UNKNOWN_COM_ERROR;
        self.send_err(1, c, st, "rwsplit: prepared statements are not supported yet").await
    }
    pub(super) async fn stmt_execute(&mut self) -> Result<(), Error> {
        let (c, st) = code::ER_UNKNOWN_STMT_HANDLER;
        self.send_err(1, c, st, "Unknown prepared statement handler").await
    }
    pub(super) fn stmt_long_data(&mut self) {}
    pub(super) fn stmt_close(&mut self) {}
    pub(super) async fn stmt_reset(&mut self, reply: u8) -> Result<(), Error> {
        let (c, st) = code::ER_UNKNOWN_STMT_HANDLER;
        self.send_err(reply, c, st, "Unknown prepared statement handler").await
    }
    pub(super) async fn stmt_fetch(&mut self) -> Result<(), Error> {
        let (c, st) = code::ER_UNKNOWN_STMT_HANDLER;
        self.send_err(1, c, st, "Unknown prepared statement handler").await
    }
    pub(super) async fn change_user(&mut self, reply: u8) -> Result<(), Error> {
        let (c, st) = code::ER_UNKNOWN_COM_ERROR;
        self.send_err(reply, c, st, "rwsplit: COM_CHANGE_USER is not supported yet").await
    }
}
