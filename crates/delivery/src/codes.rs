//! The codes the delivery core answers with, and why a message or a connection is refused.

/// IMLib `BIZ_ERROR_INVALID_PARAMETER`.
pub const CODE_INVALID_PARAMETER: i32 = 33003;
/// IMLib `REJECTED_BY_BLACKLIST`.
pub const CODE_REJECTED_BY_BLACKLIST: i32 = 405;
/// IMLib `NOT_IN_GROUP`.
pub const CODE_NOT_IN_GROUP: i32 = 22406;
/// RongCloud "send frequency too fast".
pub const CODE_SEND_TOO_FAST: i32 = 20604;
/// IMLib `RC_CONN_SERVER_UNAVAILABLE` (used when an app's connection cap is reached).
pub const CODE_SERVER_UNAVAILABLE: i32 = 31003;
/// IMLib `RC_CONN_USER_BLOCKED`.
pub const CODE_USER_BLOCKED: i32 = 31009;
/// IMLib `RC_CONN_TOKEN_EXPIRED`.
pub const CODE_TOKEN_EXPIRED: i32 = 31020;
/// rcall: a call message for a call the sender is not a participant of (IMLib has no such
/// code; 404-like so it cannot be mistaken for one of its codes).
pub const CODE_NOT_IN_CALL: i32 = 40403;
/// rcall: the message needs a stored copy for an offline recipient and the sender used up its
/// quota of messages stored for others in the current window (nothing delivered).
pub const CODE_OFFLINE_QUOTA: i32 = 40507;
/// rcall: the byte quota of all stored offline messages is used up (nothing delivered).
pub const CODE_OFFLINE_FULL: i32 = 40508;
/// rcall: the database write queue is full; a message that needs a stored copy is refused
/// rather than queued without bound (nothing delivered; retry shortly).
pub const CODE_STORE_BUSY: i32 = 40509;

/// Why a `SendMessage` was refused; nothing was delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    #[error("the recipient has blacklisted the sender")]
    RejectedByBlacklist,
    #[error("the sender is not a member of the group")]
    NotInGroup,
    #[error("the sender is not a participant of the call")]
    NotInCall,
    #[error("the user sends too fast (over all its connections)")]
    TooFast,
    #[error("the sender's quota of messages stored for offline users is used up")]
    OfflineQuota,
    #[error("offline storage is full")]
    OfflineFull,
    #[error("the database write queue is full")]
    StoreBusy,
}

impl RouteError {
    /// IMLib code for `SendResult.code`.
    pub fn imlib_code(&self) -> i32 {
        match self {
            RouteError::InvalidParameter(_) => CODE_INVALID_PARAMETER,
            RouteError::RejectedByBlacklist => CODE_REJECTED_BY_BLACKLIST,
            RouteError::NotInGroup => CODE_NOT_IN_GROUP,
            RouteError::NotInCall => CODE_NOT_IN_CALL,
            RouteError::TooFast => CODE_SEND_TOO_FAST,
            RouteError::OfflineQuota => CODE_OFFLINE_QUOTA,
            RouteError::OfflineFull => CODE_OFFLINE_FULL,
            RouteError::StoreBusy => CODE_STORE_BUSY,
        }
    }
}

/// Why an authenticated token still may not connect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    #[error("user is blocked")]
    Blocked,
    #[error("token was expired by the operator")]
    TokenExpired,
    #[error("connection limit of this app reached")]
    TooManyConnections,
    #[error("connection limit of this user reached")]
    TooManyUserConnections,
    #[error("connection limit of this device reached")]
    TooManyDeviceConnections,
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl AuthRefusal {
    pub fn imlib_code(&self) -> i32 {
        match self {
            AuthRefusal::Blocked => CODE_USER_BLOCKED,
            AuthRefusal::TokenExpired => CODE_TOKEN_EXPIRED,
            AuthRefusal::TooManyConnections
            | AuthRefusal::TooManyUserConnections
            | AuthRefusal::TooManyDeviceConnections
            | AuthRefusal::ShuttingDown => CODE_SERVER_UNAVAILABLE,
        }
    }
}
