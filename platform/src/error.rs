//! The one place where failures become gRPC statuses, with rich details:
//! `ErrorInfo` (stable reason from `plinth.errors.v1.ErrorReason`),
//! `BadRequest` field violations and `RetryInfo`.

use std::{collections::HashMap, time::Duration};

use plinth_client::errors::v1::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::{request_id, store::StoreError};

/// `ErrorInfo.domain` of every Plinth error.
pub const ERROR_DOMAIN: &str = "plinth.dev";

/// The same words for every authentication failure, so that callers cannot
/// tell a missing key from a wrong, revoked or expired one.
pub const UNAUTHENTICATED_MESSAGE: &str = "missing or invalid credentials";

/// Field violations shown in one answer; the rest are counted, so that a
/// request with many bad elements cannot make a large error.
pub const MAX_SHOWN_VIOLATIONS: usize = 10;

/// The field violations of one request: the first few, and how many more.
#[derive(Debug, Default)]
pub struct Violations {
    shown: Vec<FieldViolation>,
    omitted: usize,
}

impl Violations {
    pub fn push(&mut self, field: &str, description: impl Into<String>) {
        if self.shown.len() < MAX_SHOWN_VIOLATIONS {
            self.shown.push(FieldViolation::new(field, description));
        } else {
            self.omitted += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    /// `Ok` when nothing was violated.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self))
        }
    }

    fn into_field_violations(self) -> Vec<FieldViolation> {
        let mut violations = self.shown;
        if self.omitted > 0 {
            violations.push(FieldViolation::new(
                "",
                format!("{} more violations not shown", self.omitted),
            ));
        }
        violations
    }
}

/// A failure as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    InvalidArgument(Violations),
    #[error("{UNAUTHENTICATED_MESSAGE}")]
    Unauthenticated,
    #[error("the API key does not belong to the module named by the client certificate")]
    CertificateModuleMismatch,
    #[error(
        "the credentials do not combine: a bearer token goes only with a module key \
         whose tenant scope includes the token's tenant"
    )]
    CredentialsConflict,
    #[error("the tenant is {status}")]
    TenantNotActive { status: &'static str },
    #[error("the request message is larger than {limit_bytes} bytes")]
    MessageTooLarge { limit_bytes: usize },
    #[error("the request message does not decode")]
    MalformedMessage,
    #[error("not implemented yet")]
    Unimplemented,
    #[error("the call ran past its deadline")]
    DeadlineExceeded,
    #[error("permission denied")]
    PermissionDenied { permission: String },
    #[error("{resource_type} not found")]
    NotFound { resource_type: &'static str },
    #[error("{resource_type} already exists")]
    AlreadyExists {
        resource_type: &'static str,
        field: &'static str,
    },
    #[error("tenant limit {limit} of {value} reached")]
    TenantLimitReached { limit: &'static str, value: i32 },
    #[error("{resource_type} is {state}")]
    FailedPrecondition {
        resource_type: &'static str,
        state: String,
    },
    #[error("{message}")]
    WeakPassword {
        rule: &'static str,
        message: &'static str,
    },
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("refresh token already used; the session is revoked")]
    RefreshTokenReused,
    #[error("too many requests")]
    RateLimited {
        scope: &'static str,
        retry_after: Duration,
    },
    #[error("service temporarily unavailable")]
    Unavailable,
    #[error("this replica has not caught up with the consistency token yet; retry")]
    RbacVersionBehind { retry_after: Duration },
    #[error("no module declared the permission {permission}")]
    UnknownPermission { permission: String },
    #[error("system role {role_key} cannot be deleted and its grants cannot change")]
    SystemRole { role_key: String },
    #[error("the tenant would be left without a permanent tenant admin")]
    LastTenantAdmin,
    #[error("the caller does not hold {permission}, which the role grants")]
    PrivilegeEscalation { permission: String },
    #[error("module id {module_id} is reserved by the platform")]
    ReservedNamespace { module_id: String },
    #[error("a module key may act only in its own module namespace")]
    NamespaceViolation { module_id: String },
    #[error("role parents would form a cycle: {path}")]
    RoleCycle { path: String },
    #[error("the manifest of {module_id} breaks its rules")]
    InvalidManifest {
        module_id: String,
        violations: Violations,
    },
    #[error("module {module_id} {version} is registered with another manifest")]
    VersionImmutable { module_id: String, version: String },
    #[error("module dependencies would form a cycle: {path}")]
    DependencyCycle { path: String },
    #[error("no registered version of {module_id} meets {requirement}")]
    DependencyUnsatisfied {
        module_id: String,
        requirement: String,
    },
    #[error("modules {} depend on {module_id}", .dependents.join(", "))]
    ModuleHasDependents {
        module_id: String,
        dependents: Vec<String>,
    },
    #[error("the server is shutting down; retry on another replica")]
    ShuttingDown,
    #[error("role ancestors would be deeper than {max_depth}")]
    RoleTooDeep { max_depth: i64 },
    #[error("{resource_type} changed since it was read")]
    EtagMismatch {
        resource_type: &'static str,
        current_etag: String,
    },
    #[error("module {module_id} refused: {reason}")]
    ModuleVetoed { module_id: String, reason: String },
    #[error("module {module_id} did not answer {callback}; retry later")]
    ModuleUnavailable {
        module_id: String,
        callback: &'static str,
    },
    #[error("module {module_id} is {state} for the tenant")]
    ModuleNotEnabled { module_id: String, state: String },
    #[error("the configuration of {module_id} does not match its schema")]
    ConfigSchemaViolation {
        module_id: String,
        violations: Violations,
    },
    #[error("this replica has not caught up with the consistency token yet; retry")]
    ModulesVersionBehind { retry_after: Duration },
    #[error("idempotency key {idempotency_key} was used with other content")]
    IdempotencyKeyConflict {
        idempotency_key: String,
        index: usize,
    },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// One violation of one field.
    pub fn invalid_field(field: &str, description: impl Into<String>) -> ApiError {
        let mut violations = Violations::default();
        violations.push(field, description);
        ApiError::InvalidArgument(violations)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::NotFound {
                resource_type: "resource",
            },
            // A missing referenced row is the caller's mistake, never ours.
            StoreError::MissingReference(reference) => ApiError::NotFound {
                resource_type: reference.resource_type(),
            },
            StoreError::Conflict => ApiError::AlreadyExists {
                resource_type: "resource",
                field: "",
            },
            StoreError::Unavailable(_) => ApiError::Unavailable,
            StoreError::Internal(_) => ApiError::Internal(Box::new(error)),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let message = error.to_string();
        let (code, reason, metadata, mut details) = match error {
            ApiError::InvalidArgument(violations) => (
                Code::InvalidArgument,
                ErrorReason::InvalidArgument,
                HashMap::new(),
                ErrorDetails::with_bad_request(violations.into_field_violations()),
            ),
            ApiError::Unauthenticated => (
                Code::Unauthenticated,
                ErrorReason::Unauthenticated,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::CertificateModuleMismatch => (
                Code::Unauthenticated,
                ErrorReason::CertificateModuleMismatch,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::CredentialsConflict => (
                Code::PermissionDenied,
                ErrorReason::CredentialsConflict,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::TenantNotActive { status } => (
                Code::FailedPrecondition,
                ErrorReason::TenantNotActive,
                HashMap::from([("status".to_owned(), status.to_owned())]),
                ErrorDetails::new(),
            ),
            ApiError::MessageTooLarge { limit_bytes } => (
                Code::ResourceExhausted,
                ErrorReason::MessageTooLarge,
                HashMap::from([("limit_bytes".to_owned(), limit_bytes.to_string())]),
                ErrorDetails::new(),
            ),
            ApiError::MalformedMessage => (
                Code::InvalidArgument,
                ErrorReason::MalformedMessage,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::Unimplemented => (
                Code::Unimplemented,
                ErrorReason::Unimplemented,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::DeadlineExceeded => (
                Code::DeadlineExceeded,
                ErrorReason::DeadlineExceeded,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::PermissionDenied { permission } => (
                Code::PermissionDenied,
                ErrorReason::PermissionDenied,
                HashMap::from([("permission".to_owned(), permission)]),
                ErrorDetails::new(),
            ),
            ApiError::NotFound { resource_type } => (
                Code::NotFound,
                ErrorReason::NotFound,
                HashMap::from([("resource_type".to_owned(), resource_type.to_owned())]),
                ErrorDetails::new(),
            ),
            ApiError::AlreadyExists {
                resource_type,
                field,
            } => (
                Code::AlreadyExists,
                ErrorReason::AlreadyExists,
                HashMap::from([
                    ("resource_type".to_owned(), resource_type.to_owned()),
                    ("field".to_owned(), field.to_owned()),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::TenantLimitReached { limit, value } => (
                Code::FailedPrecondition,
                ErrorReason::TenantLimitReached,
                HashMap::from([
                    ("limit".to_owned(), limit.to_owned()),
                    ("value".to_owned(), value.to_string()),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::FailedPrecondition {
                resource_type,
                state,
            } => (
                Code::FailedPrecondition,
                ErrorReason::FailedPrecondition,
                HashMap::from([
                    ("resource_type".to_owned(), resource_type.to_owned()),
                    ("state".to_owned(), state),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::WeakPassword { rule, message } => (
                Code::InvalidArgument,
                ErrorReason::WeakPassword,
                HashMap::from([("rule".to_owned(), rule.to_owned())]),
                ErrorDetails::with_bad_request(vec![FieldViolation::new("password", message)]),
            ),
            ApiError::InvalidCredentials => (
                Code::Unauthenticated,
                ErrorReason::InvalidCredentials,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::RefreshTokenReused => (
                Code::Unauthenticated,
                ErrorReason::RefreshTokenReused,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::RateLimited { scope, retry_after } => (
                Code::ResourceExhausted,
                ErrorReason::RateLimited,
                HashMap::from([("scope".to_owned(), scope.to_owned())]),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::Unavailable => (
                Code::Unavailable,
                ErrorReason::BackendUnavailable,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::ShuttingDown => (
                Code::Unavailable,
                ErrorReason::ShuttingDown,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::RbacVersionBehind { retry_after } => (
                Code::Unavailable,
                ErrorReason::RbacVersionBehind,
                HashMap::new(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::UnknownPermission { permission } => (
                Code::FailedPrecondition,
                ErrorReason::UnknownPermission,
                HashMap::from([("permission".to_owned(), permission)]),
                ErrorDetails::new(),
            ),
            ApiError::SystemRole { role_key } => (
                Code::FailedPrecondition,
                ErrorReason::SystemRole,
                HashMap::from([("role_key".to_owned(), role_key)]),
                ErrorDetails::new(),
            ),
            ApiError::LastTenantAdmin => (
                Code::FailedPrecondition,
                ErrorReason::LastTenantAdmin,
                HashMap::new(),
                ErrorDetails::new(),
            ),
            ApiError::PrivilegeEscalation { permission } => (
                Code::PermissionDenied,
                ErrorReason::PrivilegeEscalation,
                HashMap::from([("permission".to_owned(), permission)]),
                ErrorDetails::new(),
            ),
            ApiError::ReservedNamespace { module_id } => (
                Code::InvalidArgument,
                ErrorReason::ReservedNamespace,
                HashMap::from([("module_id".to_owned(), module_id)]),
                ErrorDetails::with_bad_request(vec![FieldViolation::new(
                    "module_id",
                    "is reserved by the platform",
                )]),
            ),
            ApiError::NamespaceViolation { module_id } => (
                Code::PermissionDenied,
                ErrorReason::ModuleNamespaceViolation,
                HashMap::from([("module_id".to_owned(), module_id)]),
                ErrorDetails::new(),
            ),
            ApiError::RoleCycle { path } => (
                Code::FailedPrecondition,
                ErrorReason::RoleCycle,
                HashMap::from([("path".to_owned(), path)]),
                ErrorDetails::new(),
            ),
            ApiError::InvalidManifest {
                module_id,
                violations,
            } => (
                Code::InvalidArgument,
                ErrorReason::InvalidManifest,
                HashMap::from([("module_id".to_owned(), module_id)]),
                ErrorDetails::with_bad_request(violations.into_field_violations()),
            ),
            ApiError::VersionImmutable { module_id, version } => (
                Code::AlreadyExists,
                ErrorReason::ModuleVersionImmutable,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("version".to_owned(), version),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::DependencyCycle { path } => (
                Code::FailedPrecondition,
                ErrorReason::DependencyCycle,
                HashMap::from([("path".to_owned(), path)]),
                ErrorDetails::new(),
            ),
            ApiError::DependencyUnsatisfied {
                module_id,
                requirement,
            } => (
                Code::FailedPrecondition,
                ErrorReason::DependencyUnsatisfied,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("version_requirement".to_owned(), requirement),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ModuleHasDependents {
                module_id,
                dependents,
            } => (
                Code::FailedPrecondition,
                ErrorReason::ModuleHasDependents,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    // Bounded: the first few name the problem.
                    (
                        "dependents".to_owned(),
                        dependents
                            .iter()
                            .take(10)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::RoleTooDeep { max_depth } => (
                Code::FailedPrecondition,
                ErrorReason::RoleCycle,
                HashMap::from([("max_depth".to_owned(), max_depth.to_string())]),
                ErrorDetails::new(),
            ),
            ApiError::EtagMismatch {
                resource_type,
                current_etag,
            } => (
                Code::Aborted,
                ErrorReason::EtagMismatch,
                HashMap::from([
                    ("resource_type".to_owned(), resource_type.to_owned()),
                    ("current_etag".to_owned(), current_etag),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ModuleVetoed { module_id, reason } => (
                Code::FailedPrecondition,
                ErrorReason::ModuleVetoed,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("veto_reason".to_owned(), reason),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ModuleUnavailable {
                module_id,
                callback,
            } => (
                Code::Unavailable,
                ErrorReason::ModuleUnavailable,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("callback".to_owned(), callback.to_owned()),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ModuleNotEnabled { module_id, state } => (
                Code::FailedPrecondition,
                ErrorReason::ModuleNotEnabled,
                HashMap::from([
                    ("module_id".to_owned(), module_id),
                    ("state".to_owned(), state),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::ConfigSchemaViolation {
                module_id,
                violations,
            } => (
                Code::InvalidArgument,
                ErrorReason::ConfigSchemaViolation,
                HashMap::from([("module_id".to_owned(), module_id)]),
                ErrorDetails::with_bad_request(violations.into_field_violations()),
            ),
            ApiError::ModulesVersionBehind { retry_after } => (
                Code::Unavailable,
                ErrorReason::ModulesVersionBehind,
                HashMap::new(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::IdempotencyKeyConflict {
                idempotency_key,
                index,
            } => (
                Code::AlreadyExists,
                ErrorReason::IdempotencyKeyConflict,
                HashMap::from([
                    ("idempotency_key".to_owned(), idempotency_key),
                    ("index".to_owned(), index.to_string()),
                ]),
                ErrorDetails::new(),
            ),
            ApiError::Internal(source) => {
                let request_id = request_id::current().unwrap_or_default();
                tracing::error!(%request_id, error = %error_chain(&*source), "internal error");
                return Status::with_error_details(
                    Code::Internal,
                    format!("internal error (request id {request_id})"),
                    ErrorDetails::with_error_info(
                        ErrorReason::Internal.as_str_name(),
                        ERROR_DOMAIN,
                        HashMap::from([("request_id".to_owned(), request_id.to_string())]),
                    ),
                );
            }
        };
        details.set_error_info(reason.as_str_name(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

/// `outer: inner: innermost`, for logs only.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
