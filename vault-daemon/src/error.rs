//! The locker's typed error. Every failure a caller can see is one of these kinds; the gRPC
//! layer maps each kind to one status code in one place (`grpc::status`).
//!
//! Messages are shown to callers and written to audit entries, so they never contain a number,
//! a token, a PIN or key material.

/// How an audited call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call did what was asked.
    Allowed,
    /// Authentication or authorisation refused the call.
    Denied,
    /// The call was allowed but could not be carried out (bad input, missing record, backend
    /// down, integrity failure).
    Failed,
    /// The caller gave up before the call was committed: nothing was applied or released.
    Abandoned,
    /// A note after an entry that was committed but whose result never reached the caller
    /// (it had gone): for an unseal, the number was not delivered.
    Undelivered,
}

impl Outcome {
    /// Name in audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "ALLOWED",
            Outcome::Denied => "DENIED",
            Outcome::Failed => "FAILED",
            Outcome::Abandoned => "ABANDONED",
            Outcome::Undelivered => "UNDELIVERED",
        }
    }
}

/// A failure of a locker operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bad input: number, purpose code, handle syntax, field lengths.
    #[error("{0}")]
    InvalidArgument(String),
    /// No token, or a token that is malformed, unknown, expired, revoked or bound elsewhere.
    #[error("{0}")]
    Unauthenticated(String),
    /// Role, tenant, grant or purpose denial.
    #[error("{0}")]
    PermissionDenied(String),
    /// Unknown handle, tenant, operator or token.
    #[error("{0}")]
    NotFound(String),
    /// Creating something that exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The record's state forbids the call (disposed, suspended).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The key backend or the audit log is unavailable: fail closed.
    #[error("{0}")]
    Unavailable(String),
    /// Stored data failed its integrity check (tampering or corruption).
    #[error("{0}")]
    Integrity(String),
    /// A limit was hit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The call took longer than the server allows.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A concurrent change to the same record came first; nothing was changed, try again.
    #[error("{0}")]
    Aborted(String),
    /// A bug or an unexpected state.
    #[error("{0}")]
    Internal(String),
    /// A rate limit refused the call: retry after the given time.
    #[error("{message}")]
    RateLimited {
        /// What was limited, and when a retry passes.
        message: String,
        /// Milliseconds until a retry passes.
        retry_after_ms: u64,
    },
    /// A denial answered as "not found", so the answer tells nothing about what exists
    /// elsewhere (another tenant's record); the audit entry keeps the real reason.
    #[error("{shown}")]
    Concealed {
        /// What the caller is told (the same as for something that does not exist).
        shown: String,
        /// Why it was refused, for the audit entry.
        cause: String,
    },
}

impl Error {
    /// The gRPC status code name this error maps to, as written in audit entries.
    pub fn code_name(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::PermissionDenied(_) => "PERMISSION_DENIED",
            Error::NotFound(_) => "NOT_FOUND",
            Error::AlreadyExists(_) => "ALREADY_EXISTS",
            Error::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::Integrity(_) => "DATA_LOSS",
            Error::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Error::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            Error::Aborted(_) => "ABORTED",
            Error::Internal(_) => "INTERNAL",
            Error::Concealed { .. } => "NOT_FOUND",
            Error::RateLimited { .. } => "RESOURCE_EXHAUSTED",
        }
    }

    /// What the audit entry records as the reason: the message, or for a concealed denial
    /// its real cause.
    pub fn audit_reason(&self) -> String {
        match self {
            Error::Concealed { cause, .. } => cause.clone(),
            other => other.to_string(),
        }
    }

    /// Denied for authentication and authorisation refusals, Failed for everything else.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Unauthenticated(_)
            | Error::PermissionDenied(_)
            | Error::Concealed { .. }
            | Error::RateLimited { .. } => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }
}

/// Result with the locker's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
