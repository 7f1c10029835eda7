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
    /// An error with the stable, machine-readable reason clients act on (sent as
    /// google.rpc.ErrorInfo); code and message are the inner error's.
    #[error("{error}")]
    Because {
        /// Why, for programs.
        reason: Reason,
        /// The error itself.
        error: Box<Error>,
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

/// Stable reasons a client can act on without parsing messages (listed in locker.proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The number's check digit does not match.
    CheckDigitMismatch,
    /// The number does not have twelve digits.
    WrongLength,
    /// The number holds a character that is neither a digit nor an allowed separator.
    InvalidCharacter,
    /// A separator stands where none may.
    MisplacedSeparator,
    /// A purpose code not in the catalogue.
    PurposeUnknown,
    /// The caller is not granted this purpose on the tenant.
    PurposeNotGranted,
    /// The purpose is not among the record's permitted purposes.
    PurposeNotOnRecord,
    /// The record's use is suspended (規程第49条).
    RecordSuspended,
    /// The record has been disposed of.
    RecordDisposed,
    /// The person left: the record serves only the retention of its purposes.
    RecordRetired,
    /// The retention for this purpose ended after the person left.
    RetentionEnded,
    /// A per-operator rate limit; RetryInfo says when to retry.
    RateLimited,
    /// Too many failed authentications from this address; RetryInfo says when to retry.
    TooManyFailedAuthentications,
    /// No bearer token was sent.
    TokenMissing,
    /// The bearer token is not of the locker's form.
    TokenMalformed,
    /// The bearer token is not known.
    TokenUnknown,
    /// The bearer token has expired.
    TokenExpired,
    /// The bearer token has been revoked.
    TokenRevoked,
    /// The token is bound to a client certificate this connection did not present.
    CertificateMismatch,
    /// The token's operator is disabled.
    OperatorDisabled,
    /// Disabling this admin would leave too few admins to approve changes.
    TooFewAdmins,
    /// The operator's creation, or the token's issue, waits for another admin's approval.
    PendingApproval,
}

impl Reason {
    /// The reason as sent in google.rpc.ErrorInfo.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CheckDigitMismatch => "CHECK_DIGIT_MISMATCH",
            Reason::WrongLength => "WRONG_LENGTH",
            Reason::InvalidCharacter => "INVALID_CHARACTER",
            Reason::MisplacedSeparator => "MISPLACED_SEPARATOR",
            Reason::PurposeUnknown => "PURPOSE_UNKNOWN",
            Reason::PurposeNotGranted => "PURPOSE_NOT_GRANTED",
            Reason::PurposeNotOnRecord => "PURPOSE_NOT_ON_RECORD",
            Reason::RecordSuspended => "RECORD_SUSPENDED",
            Reason::RecordDisposed => "RECORD_DISPOSED",
            Reason::RecordRetired => "RECORD_RETIRED",
            Reason::RetentionEnded => "RETENTION_ENDED",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::TooManyFailedAuthentications => "TOO_MANY_FAILED_AUTHENTICATIONS",
            Reason::TokenMissing => "TOKEN_MISSING",
            Reason::TokenMalformed => "TOKEN_MALFORMED",
            Reason::TokenUnknown => "TOKEN_UNKNOWN",
            Reason::TokenExpired => "TOKEN_EXPIRED",
            Reason::TokenRevoked => "TOKEN_REVOKED",
            Reason::CertificateMismatch => "CERTIFICATE_MISMATCH",
            Reason::OperatorDisabled => "OPERATOR_DISABLED",
            Reason::TooFewAdmins => "TOO_FEW_ADMINS",
            Reason::PendingApproval => "PENDING_APPROVAL",
        }
    }
}

impl Error {
    /// This error, with `reason` for programs.
    pub fn because(self, reason: Reason) -> Error {
        Error::Because {
            reason,
            error: Box::new(self),
        }
    }

    /// The error without its reason.
    pub fn kind(&self) -> &Error {
        match self {
            Error::Because { error, .. } => error.kind(),
            other => other,
        }
    }

    /// The stable reason: the one given, else the status code's name.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Because { reason, .. } => reason.as_str(),
            Error::RateLimited { .. } => Reason::RateLimited.as_str(),
            other => other.code_name(),
        }
    }

    /// The gRPC status code name this error maps to, as written in audit entries.
    pub fn code_name(&self) -> &'static str {
        match self {
            Error::Because { error, .. } => error.code_name(),
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
            Error::Because { error, .. } => error.audit_reason(),
            Error::Concealed { cause, .. } => cause.clone(),
            other => other.to_string(),
        }
    }

    /// Denied for authentication and authorisation refusals, Failed for everything else.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Because { error, .. } => error.outcome(),
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
