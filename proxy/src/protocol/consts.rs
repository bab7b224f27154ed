//! Wire constants of the MySQL client/server protocol that the proxy reads or writes.

/// Capability flags (`CLIENT_*`).
pub mod cap {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;

    /// What the proxy offers clients. Compression and optional result-set metadata are not
    /// offered: the proxy forwards result bytes unchanged and parses their framing, which both
    /// would alter. `SSL` is added only when TLS is configured.
    pub const PROXY_OFFERS: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | RESERVED
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_DATA
        | CAN_HANDLE_EXPIRED_PASSWORDS
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// Flags that change what a backend sends back (result framing, affected-row counts,
    /// statement splitting). A pooled backend connection is reused only by clients that agree on
    /// these, so its bytes can be forwarded unchanged.
    pub const RESPONSE_SHAPING: u32 = FOUND_ROWS
        | LOCAL_FILES
        | IGNORE_SPACE
        | INTERACTIVE
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | SESSION_TRACK
        | DEPRECATE_EOF
        | LONG_FLAG
        | ODBC
        | NO_SCHEMA;
}

/// Server status flags carried by OK and EOF packets (`SERVER_*`).
pub mod status {
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 1 << 1;
    pub const MORE_RESULTS_EXISTS: u16 = 1 << 3;
    pub const CURSOR_EXISTS: u16 = 1 << 6;
    pub const LAST_ROW_SENT: u16 = 1 << 7;
    pub const IN_TRANS_READONLY: u16 = 1 << 13;
    pub const SESSION_STATE_CHANGED: u16 = 1 << 14;
}

/// Command bytes (`COM_*`).
pub mod com {
    pub const SLEEP: u8 = 0x00;
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// Error codes the proxy itself sends, with their SQLSTATE.
pub mod code {
    pub const ER_CON_COUNT_ERROR: (u16, &str) = (1040, "08004");
    pub const ER_ACCESS_DENIED_ERROR: (u16, &str) = (1045, "28000");
    pub const ER_UNKNOWN_COM_ERROR: (u16, &str) = (1047, "08S01");
    pub const ER_HANDSHAKE_ERROR: (u16, &str) = (1043, "08S01");
    pub const ER_NET_PACKET_TOO_LARGE: (u16, &str) = (1153, "08S01");
    pub const ER_NET_READ_ERROR: (u16, &str) = (1158, "08S01");
    pub const ER_UNKNOWN_STMT_HANDLER: (u16, &str) = (1243, "HY000");
    pub const ER_MAX_PREPARED_STMT_COUNT_REACHED: (u16, &str) = (1461, "42000");
    pub const ER_OPTION_PREVENTS_STATEMENT: (u16, &str) = (1290, "HY000");
    pub const ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: (u16, &str) = (1792, "25006");
    pub const ER_SECURE_TRANSPORT_REQUIRED: (u16, &str) = (3159, "HY000");
    pub const ER_UNKNOWN_ERROR: (u16, &str) = (1105, "HY000");
    pub const ER_WRONG_VALUE_FOR_VAR: (u16, &str) = (1231, "42000");
    pub const ER_NOT_SUPPORTED_AUTH_MODE: (u16, &str) = (1251, "08004");
    pub const ER_LOCK_WAIT_TIMEOUT_PROXY: (u16, &str) = (2013, "HY000");
    pub const ER_NO_SUCH_THREAD: (u16, &str) = (1094, "HY000");
    pub const ER_KILL_DENIED_ERROR: (u16, &str) = (1095, "HY000");
    pub const ER_NOT_SUPPORTED_YET: (u16, &str) = (1235, "42000");
    pub const ER_QUERY_INTERRUPTED: (u16, &str) = (1317, "70100");
    pub const ER_CONNECTION_KILLED: (u16, &str) = (1927, "70100");
}

/// Character set / collation id sent in the handshake when nothing else is known
/// (utf8mb4_general_ci, understood by MariaDB and MySQL alike).
pub const DEFAULT_COLLATION: u8 = 45;

/// A frame's payload length when the packet continues in the next frame.
pub const MAX_FRAME: usize = 0xFF_FFFF;
