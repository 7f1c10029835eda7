//! The `Locker` gRPC service: adapters from messages to [`service::Locker`] calls.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};

use tonic::{Request, Response, Status};
use vault_proto::v1 as pb;
use vault_proto::v1::locker_server::Locker as LockerRpc;
use zeroize::Zeroizing;

use crate::grpc::context::{batch_context, request_context};
use crate::grpc::convert;
use crate::grpc::status::to_status;
use crate::service::{self, SealRequest};

/// Items of one batch processed at once: enough to fill the group-commit writer and the key
/// backend, while results still stream back in order.
const BATCH_IN_FLIGHT: usize = 128;

/// Inbound items of one batch read ahead of their results, at most. A client may send its
/// whole batch before it reads a result; were the items left unread in HTTP/2's buffers, each
/// small DATA frame would count against the connection's frame budget and h2 would close the
/// connection (GOAWAY `too_many_data_frames`) — what a grpcio client streaming 10,000 items to
/// a slow backend met. Read into this queue, the frames are released as they arrive; only
/// past it does the client wait on flow control.
const INBOUND_QUEUE: usize = 16_384;

/// Reads a batch's inbound items as they arrive into a bounded queue (see [`INBOUND_QUEUE`]).
fn read_ahead<T: Send + 'static>(
    mut inbound: tonic::Streaming<T>,
) -> tokio_stream::wrappers::ReceiverStream<Result<T, Status>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(INBOUND_QUEUE);
    tokio::spawn(async move {
        loop {
            let item = match inbound.message().await {
                Ok(Some(item)) => Ok(item),
                Ok(None) => return,
                Err(status) => Err(status),
            };
            let failed = item.is_err();
            // The response side went away (client gone, call over): stop reading.
            if sender.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

type ResultStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn batch_error(error: &crate::error::Error) -> pb::BatchError {
    pb::BatchError {
        code: error.code_name().into(),
        message: error.to_string(),
        reason: error.reason().into(),
    }
}

/// The context of item `index` of a batch: the call's token and peer, its own request id.
fn item_context(
    base: &crate::service::RequestContext,
    index: u64,
) -> crate::service::RequestContext {
    crate::service::RequestContext {
        token: base.token.clone(),
        peer_addr: base.peer_addr.clone(),
        cert_fingerprint: base.cert_fingerprint.clone(),
        request_id: format!("{}.{index}", base.request_id),
        session: base.session.clone(),
    }
}

/// A wire seal request as the service's; the number moves into a zeroising buffer.
fn seal_request(mut message: pb::SealRequest) -> SealRequest {
    let verification = message.verification.take().unwrap_or_default();
    SealRequest {
        tenant: message.tenant,
        subject_ref: message.subject_ref,
        subject_kind: convert::subject_kind_from_wire(message.subject_kind),
        purposes: message.purposes,
        number: Zeroizing::new(std::mem::take(&mut message.number)),
        verification: (
            verification.number_check,
            verification.identity_check,
            verification.agent_authority,
        ),
    }
}

/// Implements the generated `Locker` service.
pub struct LockerApi {
    locker: Arc<service::Locker>,
}

impl LockerApi {
    async fn decide_correction(
        &self,
        request: Request<pb::CorrectionDecision>,
        approve: bool,
    ) -> Result<Response<pb::Correction>, Status> {
        let ctx = request_context(&request);
        let message = request.get_ref();
        let correction = self
            .locker
            .decide_correction(&ctx, &message.id, &message.note, approve)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::correction(correction)))
    }

    /// Wraps the service.
    pub fn new(locker: Arc<service::Locker>) -> LockerApi {
        LockerApi { locker }
    }
}

fn seal_response(sealed: crate::service::SealResult) -> pb::SealResponse {
    pb::SealResponse {
        handle: sealed.handle.to_string(),
        existing: sealed.existing,
        purposes_not_on_record: sealed.differences.purposes_not_on_record,
        subject_ref_differs: sealed.differences.subject_ref_differs,
        subject_kind_differs: sealed.differences.subject_kind_differs,
    }
}

impl LockerApi {
    async fn set_suspended(
        &self,
        request: Request<pb::SuspendRequest>,
        suspend: bool,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        let ctx = request_context(&request);
        let m = request.get_ref();
        let record = self
            .locker
            .set_suspended(&ctx, &m.handle, &m.reason, suspend)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::record_info(
            record,
            self.locker.purposes(),
        )))
    }
}

#[tonic::async_trait]
impl LockerRpc for LockerApi {
    async fn ping(
        &self,
        _request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {}))
    }

    async fn seal(
        &self,
        request: Request<pb::SealRequest>,
    ) -> Result<Response<pb::SealResponse>, Status> {
        let ctx = request_context(&request);
        let sealed = self
            .locker
            .seal(&ctx, seal_request(request.into_inner()))
            .await
            .map_err(to_status)?;
        Ok(Response::new(seal_response(sealed)))
    }

    type SealBatchStream = ResultStream<pb::SealBatchResult>;

    async fn seal_batch(
        &self,
        request: Request<tonic::Streaming<pb::SealRequest>>,
    ) -> Result<Response<Self::SealBatchStream>, Status> {
        let base = Arc::new(batch_context(&request));
        let locker = Arc::clone(&self.locker);
        let results = read_ahead(request.into_inner())
            .enumerate()
            .map(move |(index, item)| {
                let (locker, base) = (Arc::clone(&locker), Arc::clone(&base));
                async move {
                    let index = index as u64;
                    let ctx = item_context(&base, index);
                    let result = locker.seal(&ctx, seal_request(item?)).await;
                    Ok(match result {
                        Ok(sealed) => pb::SealBatchResult {
                            index,
                            sealed: Some(seal_response(sealed)),
                            error: None,
                        },
                        Err(error) => pb::SealBatchResult {
                            index,
                            sealed: None,
                            error: Some(batch_error(&error)),
                        },
                    })
                }
            })
            .buffered(BATCH_IN_FLIGHT);
        Ok(Response::new(Box::pin(results)))
    }

    type UnsealBatchStream = ResultStream<pb::UnsealBatchResult>;

    async fn unseal_batch(
        &self,
        request: Request<tonic::Streaming<pb::UnsealRequest>>,
    ) -> Result<Response<Self::UnsealBatchStream>, Status> {
        let base = Arc::new(batch_context(&request));
        let locker = Arc::clone(&self.locker);
        let results = read_ahead(request.into_inner())
            .enumerate()
            .map(move |(index, item)| {
                let (locker, base) = (Arc::clone(&locker), Arc::clone(&base));
                async move {
                    let message = item?;
                    let index = index as u64;
                    let ctx = item_context(&base, index);
                    Ok(
                        match locker
                            .unseal_for(&ctx, &message.handle, &message.purpose)
                            .await
                        {
                            Ok(unsealed) => pb::UnsealBatchResult {
                                index,
                                handle: message.handle,
                                number: unsealed.number.as_str().to_owned(),
                                error: None,
                                subject_ref: unsealed.subject_ref,
                                subject_kind: convert::subject_kind_to_wire(unsealed.subject_kind)
                                    as i32,
                            },
                            Err(error) => pb::UnsealBatchResult {
                                index,
                                handle: message.handle,
                                error: Some(batch_error(&error)),
                                ..Default::default()
                            },
                        },
                    )
                }
            })
            .buffered(BATCH_IN_FLIGHT);
        Ok(Response::new(Box::pin(results)))
    }

    async fn unseal(
        &self,
        request: Request<pb::UnsealRequest>,
    ) -> Result<Response<pb::UnsealResponse>, Status> {
        let ctx = request_context(&request);
        let message = request.into_inner();
        let unsealed = self
            .locker
            .unseal_for(&ctx, &message.handle, &message.purpose)
            .await
            .map_err(to_status)?;
        // The response owns a copy for encoding; the service's buffer is zeroised here.
        Ok(Response::new(pb::UnsealResponse {
            number: unsealed.number.as_str().to_owned(),
            subject_ref: unsealed.subject_ref,
            subject_kind: convert::subject_kind_to_wire(unsealed.subject_kind) as i32,
        }))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let ctx = request_context(&request);
        let message = request.into_inner();
        let number = Zeroizing::new(message.number);
        let handle = self
            .locker
            .lookup(&ctx, &message.tenant, &number)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LookupResponse {
            handle: handle.to_string(),
        }))
    }

    async fn describe(
        &self,
        request: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        let ctx = request_context(&request);
        let record = self
            .locker
            .describe(&ctx, &request.get_ref().handle)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::record_info(
            record,
            self.locker.purposes(),
        )))
    }

    async fn record_carry_out(
        &self,
        request: Request<pb::CarryOutRequest>,
    ) -> Result<Response<pb::CarryOutReceipt>, Status> {
        let ctx = request_context(&request);
        let m = request.into_inner();
        let format = match pb::CarryOutFormat::try_from(m.format) {
            Ok(pb::CarryOutFormat::ZipAes256) => Some(crate::service::CarryOutFormat::ZipAes256),
            Ok(pb::CarryOutFormat::Plaintext) => Some(crate::service::CarryOutFormat::Plaintext),
            Ok(pb::CarryOutFormat::Unspecified) | Err(_) => None,
        };
        let at_ms = self
            .locker
            .record_carry_out(
                &ctx,
                crate::service::CarryOut {
                    purpose: m.purpose,
                    count: m.count,
                    format,
                    file_sha256: m.file_sha256,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CarryOutReceipt {
            recorded_at_unix: at_ms.div_euclid(1000),
        }))
    }

    async fn add_purposes(
        &self,
        request: Request<pb::AddPurposesRequest>,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        let ctx = request_context(&request);
        let m = request.get_ref();
        let record = self
            .locker
            .add_purposes(&ctx, &m.handle, &m.purposes)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::record_info(
            record,
            self.locker.purposes(),
        )))
    }

    async fn suspend(
        &self,
        request: Request<pb::SuspendRequest>,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        self.set_suspended(request, true).await
    }

    async fn resume(
        &self,
        request: Request<pb::SuspendRequest>,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        self.set_suspended(request, false).await
    }

    async fn dispose(
        &self,
        request: Request<pb::DisposeRequest>,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        let ctx = request_context(&request);
        let message = request.get_ref();
        let record = self
            .locker
            .dispose(&ctx, &message.handle, &message.reason)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::record_info(
            record,
            self.locker.purposes(),
        )))
    }

    async fn retire(
        &self,
        request: Request<pb::RetireRequest>,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        let ctx = request_context(&request);
        let message = request.get_ref();
        let record = self
            .locker
            .retire(&ctx, &message.handle, &message.left_on)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::record_info(
            record,
            self.locker.purposes(),
        )))
    }

    async fn set_acquisition_date(
        &self,
        request: Request<pb::SetAcquisitionDateRequest>,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        let ctx = request_context(&request);
        let message = request.get_ref();
        let record = self
            .locker
            .set_acquisition_date(&ctx, &message.handle, &message.acquired_on, &message.reason)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::record_info(
            record,
            self.locker.purposes(),
        )))
    }

    async fn unretire(
        &self,
        request: Request<pb::UnretireRequest>,
    ) -> Result<Response<pb::RecordInfo>, Status> {
        let ctx = request_context(&request);
        let message = request.get_ref();
        let record = self
            .locker
            .unretire(&ctx, &message.handle, &message.reason)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::record_info(
            record,
            self.locker.purposes(),
        )))
    }

    async fn request_correction(
        &self,
        request: Request<pb::CorrectionRequest>,
    ) -> Result<Response<pb::Correction>, Status> {
        let ctx = request_context(&request);
        let mut message = request.into_inner();
        let number = Zeroizing::new(std::mem::take(&mut message.number));
        let correction = self
            .locker
            .request_correction(
                &ctx,
                &message.handle,
                &number,
                &message.reason,
                &message.asked_by,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::correction(correction)))
    }

    async fn approve_correction(
        &self,
        request: Request<pb::CorrectionDecision>,
    ) -> Result<Response<pb::Correction>, Status> {
        self.decide_correction(request, true).await
    }

    async fn reject_correction(
        &self,
        request: Request<pb::CorrectionDecision>,
    ) -> Result<Response<pb::Correction>, Status> {
        self.decide_correction(request, false).await
    }

    async fn list_corrections(
        &self,
        request: Request<pb::ListCorrectionsRequest>,
    ) -> Result<Response<pb::ListCorrectionsResponse>, Status> {
        let ctx = request_context(&request);
        let list = self
            .locker
            .list_corrections(&ctx, &request.get_ref().tenant)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListCorrectionsResponse {
            corrections: list.into_iter().map(convert::correction).collect(),
        }))
    }

    async fn get_deletion_certificate(
        &self,
        request: Request<pb::CertificateRequest>,
    ) -> Result<Response<pb::DeletionCertificate>, Status> {
        let ctx = request_context(&request);
        let certificate = self
            .locker
            .deletion_certificate(&ctx, &request.get_ref().handle)
            .await
            .map_err(to_status)?;
        let (tenant_name, details) = self.locker.tenant_for_print(&certificate.tenant).await;
        Ok(Response::new(pb::DeletionCertificate {
            tenant_name,
            file_kind: details.file_kind,
            file_name: details.file_name,
            responsible_person: details.responsible_person,
            responsible_department: details.responsible_department,
            ..convert::certificate(certificate)
        }))
    }
}
