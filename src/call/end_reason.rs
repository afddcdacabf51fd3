//! Why a call ended: a closed set with stable snake_case codes for logs and records.

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEndReason {
    /// The provider sent `stop` (the caller hung up).
    CallerHangup,
    /// The media socket closed without `stop`.
    SocketClosed,
    /// The provider broke its protocol (malformed, binary or oversized frames, bad codec).
    ProtocolError,
    /// The stream never started.
    NoStart,
    /// The daemon is shutting down.
    Shutdown,
    /// A task of the call died unexpectedly.
    Internal,
    /// The bot asked to hang up.
    BotHangup,
    /// The bot asked to transfer the caller, and the provider took the call.
    BotTransfer,
    /// The bot asked to transfer the caller, and the provider could not.
    TransferFailed,
    /// The caller stayed silent through every reprompt.
    NoInput,
    /// The bot failed too many turns in a row.
    BotFailure,
    /// The call reached its time limit.
    MaxDuration,
}

impl CallEndReason {
    /// Every reason, so metrics can expose each code from startup.
    pub const ALL: [CallEndReason; 12] = [
        CallEndReason::CallerHangup,
        CallEndReason::SocketClosed,
        CallEndReason::ProtocolError,
        CallEndReason::NoStart,
        CallEndReason::Shutdown,
        CallEndReason::Internal,
        CallEndReason::BotHangup,
        CallEndReason::BotTransfer,
        CallEndReason::TransferFailed,
        CallEndReason::NoInput,
        CallEndReason::BotFailure,
        CallEndReason::MaxDuration,
    ];

    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            CallEndReason::CallerHangup => "caller.hangup",
            CallEndReason::SocketClosed => "caller.socket_closed",
            CallEndReason::ProtocolError => "provider.protocol_error",
            CallEndReason::NoStart => "provider.no_start",
            CallEndReason::Shutdown => "daemon.shutdown",
            CallEndReason::Internal => "internal",
            CallEndReason::BotHangup => "bot.hangup",
            CallEndReason::BotTransfer => "bot.transfer",
            CallEndReason::TransferFailed => "bot.transfer_failed",
            CallEndReason::NoInput => "caller.no_input",
            CallEndReason::BotFailure => "bot.failure",
            CallEndReason::MaxDuration => "call.max_duration",
        }
    }
}
