//! The `Admin` gRPC service: adapters from messages to [`service::Locker`] calls.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use secrecy::ExposeSecret;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vault_proto::v1 as pb;
use vault_proto::v1::admin_server::Admin as AdminRpc;

use crate::grpc::context::request_context;
use crate::grpc::status::to_status;
use crate::grpc::{convert, reports};
use crate::service::{self, NewOperator, NewTenant, TokenRequest};

/// Implements the generated `Admin` service.
pub struct AdminApi {
    locker: Arc<service::Locker>,
}

impl AdminApi {
    /// Wraps the service.
    pub fn new(locker: Arc<service::Locker>) -> AdminApi {
        AdminApi { locker }
    }
}

impl AdminApi {
    async fn set_operator_disabled(
        &self,
        request: Request<pb::DisableOperatorRequest>,
        disabled: bool,
    ) -> Result<Response<pb::Operator>, Status> {
        let ctx = request_context(&request);
        let operator = self
            .locker
            .set_operator_disabled(&ctx, &request.get_ref().operator_id, disabled)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::gated_operator(
            operator,
            self.locker.now_ms(),
        )))
    }

    async fn change_grants(
        &self,
        request: Request<pb::GrantRequest>,
        revoke: bool,
    ) -> Result<Response<pb::Operator>, Status> {
        let ctx = request_context(&request);
        let m = request.get_ref();
        let operator = self
            .locker
            .change_grants(&ctx, &m.operator_id, &m.tenant, &m.purposes, revoke)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::gated_operator(
            operator,
            self.locker.now_ms(),
        )))
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::AuditEntry, Status>> + Send>>;
type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl AdminRpc for AdminApi {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = request_context(&request);
        let m = request.into_inner();
        let tenant = self
            .locker
            .create_tenant(
                &ctx,
                NewTenant {
                    id: m.tenant_id,
                    name: m.name,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::tenant(tenant)))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let ctx = request_context(&request);
        let tenants = self.locker.list_tenants(&ctx).await.map_err(to_status)?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(convert::tenant).collect(),
        }))
    }

    async fn create_operator(
        &self,
        request: Request<pb::CreateOperatorRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        let ctx = request_context(&request);
        let m = request.into_inner();
        let operator = self
            .locker
            .create_operator(
                &ctx,
                NewOperator {
                    id: m.operator_id,
                    role: convert::role_from_wire(m.role),
                    display_name: m.display_name,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::gated_operator(
            operator,
            self.locker.now_ms(),
        )))
    }

    async fn list_operators(
        &self,
        request: Request<pb::ListOperatorsRequest>,
    ) -> Result<Response<pb::ListOperatorsResponse>, Status> {
        let ctx = request_context(&request);
        let operators = self.locker.list_operators(&ctx).await.map_err(to_status)?;
        Ok(Response::new(pb::ListOperatorsResponse {
            operators: operators.into_iter().map(convert::operator).collect(),
        }))
    }

    async fn disable_operator(
        &self,
        request: Request<pb::DisableOperatorRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        self.set_operator_disabled(request, true).await
    }

    async fn enable_operator(
        &self,
        request: Request<pb::DisableOperatorRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        self.set_operator_disabled(request, false).await
    }

    async fn grant_purposes(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        self.change_grants(request, false).await
    }

    async fn revoke_purposes(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        self.change_grants(request, true).await
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let ctx = request_context(&request);
        let m = request.into_inner();
        let gated = self
            .locker
            .issue_token(
                &ctx,
                TokenRequest {
                    operator_id: m.operator_id,
                    ttl_secs: m.ttl_seconds,
                    cert_fingerprint: m.cert_fingerprint,
                },
            )
            .await
            .map_err(to_status)?;
        let (secret, record) = gated.value;
        // Held means another operator's token: what the requester gets is share 1.
        let (token, token_share) = match gated.request {
            Some(_) => (String::new(), secret.expose_secret().to_owned()),
            None => (secret.expose_secret().to_owned(), String::new()),
        };
        Ok(Response::new(pb::IssueTokenResponse {
            token_id: record.id,
            token,
            expires_at_unix: record.expires_at_ms.div_euclid(1000),
            pending_request: gated
                .request
                .map(|r| convert::change_request(r, self.locker.now_ms())),
            token_share,
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let ctx = request_context(&request);
        let (operator, token) = self.locker.whoami(&ctx).await.map_err(to_status)?;
        Ok(Response::new(pb::WhoAmIResponse {
            operator: Some(convert::operator(operator)),
            token_id: token.id,
            token_expires_at_unix: token.expires_at_ms.div_euclid(1000),
            certificate_bound: token.cert_fingerprint.is_some(),
        }))
    }

    async fn list_change_requests(
        &self,
        request: Request<pb::ListChangeRequestsRequest>,
    ) -> Result<Response<pb::ListChangeRequestsResponse>, Status> {
        let ctx = request_context(&request);
        let list = self
            .locker
            .list_change_requests(&ctx, request.get_ref().pending_only)
            .await
            .map_err(to_status)?;
        let now_ms = self.locker.now_ms();
        Ok(Response::new(pb::ListChangeRequestsResponse {
            requests: list
                .requests
                .into_iter()
                .map(|r| convert::change_request(r, now_ms))
                .collect(),
            quorum: list.quorum,
        }))
    }

    async fn approve_change_request(
        &self,
        request: Request<pb::ChangeRequestIdRequest>,
    ) -> Result<Response<pb::ChangeRequest>, Status> {
        let ctx = request_context(&request);
        let approved = self
            .locker
            .approve_change(&ctx, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        let mut answer = convert::change_request(approved.request, self.locker.now_ms());
        if let Some(share) = approved.token_share {
            answer.token_share = share.expose_secret().to_owned();
        }
        Ok(Response::new(answer))
    }

    async fn deny_change_request(
        &self,
        request: Request<pb::DenyChangeRequestRequest>,
    ) -> Result<Response<pb::ChangeRequest>, Status> {
        let ctx = request_context(&request);
        let m = request.get_ref();
        let denied = self
            .locker
            .deny_change(&ctx, &m.id, &m.reason)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::change_request(
            denied,
            self.locker.now_ms(),
        )))
    }

    async fn request_quorum(
        &self,
        request: Request<pb::RequestQuorumRequest>,
    ) -> Result<Response<pb::ChangeRequest>, Status> {
        let ctx = request_context(&request);
        let held = self
            .locker
            .request_quorum(&ctx, request.get_ref().approvals)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::change_request(
            held,
            self.locker.now_ms(),
        )))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::TokenInfo>, Status> {
        let ctx = request_context(&request);
        let token = self
            .locker
            .revoke_token(&ctx, &request.get_ref().token_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::token_info(token)))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let ctx = request_context(&request);
        let tokens = self
            .locker
            .list_tokens(&ctx, &request.get_ref().operator_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: tokens.into_iter().map(convert::token_info).collect(),
        }))
    }

    async fn list_purposes(
        &self,
        request: Request<pb::ListPurposesRequest>,
    ) -> Result<Response<pb::ListPurposesResponse>, Status> {
        let ctx = request_context(&request);
        let purposes = self.locker.list_purposes(&ctx).await.map_err(to_status)?;
        Ok(Response::new(pb::ListPurposesResponse {
            purposes: purposes.into_iter().map(convert::purpose).collect(),
        }))
    }

    async fn audit_tail(
        &self,
        request: Request<pb::AuditTailRequest>,
    ) -> Result<Response<pb::AuditTailResponse>, Status> {
        let ctx = request_context(&request);
        let limit = match request.get_ref().limit {
            0 => 50,
            n => n,
        };
        let entries = self
            .locker
            .audit_tail(&ctx, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AuditTailResponse {
            entries: entries.into_iter().map(convert::audit_entry).collect(),
        }))
    }

    type AuditExportStream = ExportStream;
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        let ctx = request_context(&request);
        let chunks = self.locker.backup(&ctx).await.map_err(to_status)?;
        use tokio_stream::StreamExt;
        // The snapshot runs on the blocking pool, holding its read transaction while the
        // client reads; a client that goes away stops it.
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(chunks).map(|chunk| {
                chunk
                    .map(|data| pb::BackupChunk { data })
                    .map_err(to_status)
            }),
        )))
    }

    async fn audit_export(
        &self,
        request: Request<pb::AuditExportRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let ctx = request_context(&request);
        let asked = request.get_ref();
        let filter = crate::service::ExportFilter::parse(
            &asked.actions,
            asked.from_unix_ms,
            asked.to_unix_ms,
        );
        let mut pages = self
            .locker
            .audit_export(&ctx, asked.after_seq, filter)
            .await
            .map_err(to_status)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let (returned, page) = match tokio::task::spawn_blocking(move || {
                    let page = pages.next_page();
                    (pages, page)
                })
                .await
                {
                    Ok(result) => result,
                    Err(_) => {
                        let _ = sender
                            .send(Err(Status::internal("export task failed")))
                            .await;
                        return;
                    }
                };
                pages = returned;
                match page {
                    Ok(page) if page.is_empty() => return,
                    Ok(page) => {
                        for entry in page {
                            if sender.send(Ok(convert::audit_entry(entry))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        let _ = sender.send(Err(to_status(error))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn audit_verify(
        &self,
        request: Request<pb::AuditVerifyRequest>,
    ) -> Result<Response<pb::AuditVerifyResponse>, Status> {
        let ctx = request_context(&request);
        let report = self.locker.audit_verify(&ctx).await.map_err(to_status)?;
        Ok(Response::new(pb::AuditVerifyResponse {
            ok: report.chain.ok,
            entries_checked: report.chain.entries_checked,
            first_bad_seq: report.chain.first_bad_seq.unwrap_or(0),
            message: report.chain.message,
            head_hash: hex::encode(report.chain.head_hash),
            checkpoints_verified: report.checkpoints_verified,
            anchored_through: report.anchored_through,
        }))
    }

    async fn audit_checkpoints(
        &self,
        request: Request<pb::AuditCheckpointsRequest>,
    ) -> Result<Response<pb::AuditCheckpointsResponse>, Status> {
        let ctx = request_context(&request);
        let (checkpoints, statement) = self
            .locker
            .audit_checkpoints(&ctx, request.get_ref().after_seq)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AuditCheckpointsResponse {
            checkpoints: checkpoints.into_iter().map(convert::checkpoint).collect(),
            anchor: statement.map(convert::anchor_statement),
        }))
    }

    async fn audit_public_keys(
        &self,
        request: Request<pb::AuditPublicKeysRequest>,
    ) -> Result<Response<pb::AuditPublicKeysResponse>, Status> {
        let ctx = request_context(&request);
        let keys = self
            .locker
            .audit_public_keys(&ctx)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AuditPublicKeysResponse {
            keys: keys.into_iter().map(convert::audit_key).collect(),
        }))
    }

    async fn rotate_tenant_keys(
        &self,
        request: Request<pb::RotateTenantKeysRequest>,
    ) -> Result<Response<pb::RewrapJob>, Status> {
        let ctx = request_context(&request);
        let job = self
            .locker
            .rotate_tenant_keys(&ctx, &request.get_ref().tenant)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::rewrap_job(job)))
    }

    async fn key_status(
        &self,
        request: Request<pb::KeyStatusRequest>,
    ) -> Result<Response<pb::KeyStatusResponse>, Status> {
        let ctx = request_context(&request);
        let status = self
            .locker
            .key_status(&ctx, &request.get_ref().tenant)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::KeyStatusResponse {
            tenants: status.into_iter().map(convert::key_status).collect(),
        }))
    }

    async fn request_key_destruction(
        &self,
        request: Request<pb::RequestKeyDestructionRequest>,
    ) -> Result<Response<pb::KeyDestruction>, Status> {
        let ctx = request_context(&request);
        let m = request.get_ref();
        let r = self
            .locker
            .request_key_destruction(&ctx, &m.tenant, m.version)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::destruction(r)))
    }

    async fn approve_key_destruction(
        &self,
        request: Request<pb::KeyDestructionIdRequest>,
    ) -> Result<Response<pb::KeyDestruction>, Status> {
        let ctx = request_context(&request);
        let r = self
            .locker
            .approve_key_destruction(&ctx, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::destruction(r)))
    }

    async fn cancel_key_destruction(
        &self,
        request: Request<pb::KeyDestructionIdRequest>,
    ) -> Result<Response<pb::KeyDestruction>, Status> {
        let ctx = request_context(&request);
        let r = self
            .locker
            .cancel_key_destruction(&ctx, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::destruction(r)))
    }

    async fn list_key_destructions(
        &self,
        request: Request<pb::ListKeyDestructionsRequest>,
    ) -> Result<Response<pb::ListKeyDestructionsResponse>, Status> {
        let ctx = request_context(&request);
        let list = self
            .locker
            .list_key_destructions(&ctx)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListKeyDestructionsResponse {
            requests: list.into_iter().map(convert::destruction).collect(),
        }))
    }

    async fn set_tenant_info(
        &self,
        request: Request<pb::TenantInfo>,
    ) -> Result<Response<pb::TenantInfo>, Status> {
        reports::set_tenant_info(&self.locker, request).await
    }

    async fn update_tenant_info(
        &self,
        request: Request<pb::UpdateTenantInfoRequest>,
    ) -> Result<Response<pb::TenantInfo>, Status> {
        reports::update_tenant_info(&self.locker, request).await
    }

    async fn ledger(
        &self,
        request: Request<pb::LedgerRequest>,
    ) -> Result<Response<pb::LedgerResponse>, Status> {
        reports::ledger(&self.locker, request).await
    }

    async fn usage_report(
        &self,
        request: Request<pb::UsageReportRequest>,
    ) -> Result<Response<pb::UsageReportResponse>, Status> {
        reports::usage_report(&self.locker, request).await
    }

    async fn incident_report(
        &self,
        request: Request<pb::IncidentReportRequest>,
    ) -> Result<Response<pb::IncidentReportResponse>, Status> {
        reports::incident_report(&self.locker, request).await
    }

    async fn disclose(
        &self,
        request: Request<pb::DisclosureRequest>,
    ) -> Result<Response<pb::DisclosureResponse>, Status> {
        reports::disclose(&self.locker, request).await
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let ctx = request_context(&request);
        let alerts = self
            .locker
            .list_alerts(&ctx, request.get_ref().after_seq)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.into_iter().map(convert::audit_entry).collect(),
        }))
    }

    async fn run_disposal(
        &self,
        request: Request<pb::RunDisposalRequest>,
    ) -> Result<Response<pb::RunDisposalResponse>, Status> {
        let ctx = request_context(&request);
        let report = self
            .locker
            .run_disposal_now(&ctx)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RunDisposalResponse {
            disposed: report.disposed,
            epoch_keys_destroyed: report.epoch_keys_destroyed,
            corrections_purged: report.corrections_purged,
        }))
    }

    async fn bench_backend(
        &self,
        request: Request<pb::BenchBackendRequest>,
    ) -> Result<Response<pb::BenchBackendResponse>, Status> {
        let ctx = request_context(&request);
        let m = request.get_ref();
        let (seconds, backend) = self
            .locker
            .bench_backend(&ctx, &m.tenant, m.count, m.concurrency)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::BenchBackendResponse {
            count: m.count,
            seconds,
            unwraps_per_second: f64::from(m.count) / seconds.max(1e-9),
            backend: backend.into(),
        }))
    }

    async fn rotate_audit_key(
        &self,
        request: Request<pb::RotateAuditKeyRequest>,
    ) -> Result<Response<pb::AuditPublicKey>, Status> {
        let ctx = request_context(&request);
        let key = self
            .locker
            .rotate_audit_key(&ctx)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::audit_key(key)))
    }
}
