//! Why a message or a connection is refused, and the code each answer carries (the codes
//! themselves live in `rtc_core::proto::error_code`, shared with the SDK).

use rtc_core::proto::error_code as code;

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
            RouteError::InvalidParameter(_) => code::INVALID_PARAMETER,
            RouteError::RejectedByBlacklist => code::REJECTED_BY_BLACKLIST,
            RouteError::NotInGroup => code::NOT_IN_GROUP,
            RouteError::NotInCall => code::NOT_IN_CALL,
            RouteError::TooFast => code::SEND_TOO_FAST,
            RouteError::OfflineQuota => code::OFFLINE_QUOTA,
            RouteError::OfflineFull => code::OFFLINE_FULL,
            RouteError::StoreBusy => code::STORE_BUSY,
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
            AuthRefusal::Blocked => code::USER_BLOCKED,
            AuthRefusal::TokenExpired => code::TOKEN_EXPIRED,
            AuthRefusal::TooManyConnections
            | AuthRefusal::TooManyUserConnections
            | AuthRefusal::TooManyDeviceConnections
            | AuthRefusal::ShuttingDown => code::SERVER_UNAVAILABLE,
        }
    }
}
