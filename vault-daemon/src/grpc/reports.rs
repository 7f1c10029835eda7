//! The report RPCs of the admin service (ledger, usage, incident, disclosure, tenant details):
//! wire ↔ service conversion only.

use tonic::{Request, Response, Status};
use vault_proto::v1 as pb;

use crate::domain::tenant_info::TenantInfo;
use crate::grpc::context::request_context;
use crate::grpc::status::to_status;
use crate::service::{DisclosureRequest, HandlersShown, LedgerEntry, Locker, Subject};

fn ms(unix: i64) -> i64 {
    unix.saturating_mul(1000)
}

fn info_to_wire(info: TenantInfo) -> pb::TenantInfo {
    pb::TenantInfo {
        tenant: info.tenant,
        file_kind: info.file_kind,
        file_name: info.file_name,
        responsible_person: info.responsible_person,
        responsible_department: info.responsible_department,
        management_area: info.management_area,
        handling_area: info.handling_area,
    }
}

fn ledger_entry(page: LedgerEntry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        tenant: page.tenant,
        tenant_name: page.tenant_name,
        info: Some(info_to_wire(page.info)),
        purposes: page
            .purposes
            .into_iter()
            .map(|p| pb::LedgerPurpose {
                code: p.code,
                article: p.article,
                label_ja: p.label_ja,
                retention_years: p.retention_years,
            })
            .collect(),
        active: page.active,
        suspended: page.suspended,
        retired: page.retired,
        disposed: page.disposed,
        last_disposal_unix: page.last_disposal_ms.map_or(0, |t| t.div_euclid(1000)),
        access: page
            .access
            .into_iter()
            .map(|a| pb::LedgerAccess {
                operator_id: a.operator,
                display_name: a.display_name,
                role: a.role.into(),
                disabled: a.disabled,
                purposes: a.purposes,
            })
            .collect(),
    }
}

/// `SetTenantInfo`.
pub async fn set_tenant_info(
    locker: &Locker,
    request: Request<pb::TenantInfo>,
) -> Result<Response<pb::TenantInfo>, Status> {
    let ctx = request_context(&request);
    let m = request.into_inner();
    let info = TenantInfo {
        tenant: m.tenant,
        file_kind: m.file_kind,
        file_name: m.file_name,
        responsible_person: m.responsible_person,
        responsible_department: m.responsible_department,
        management_area: m.management_area,
        handling_area: m.handling_area,
    };
    let info = locker
        .set_tenant_info(&ctx, info)
        .await
        .map_err(to_status)?;
    Ok(Response::new(info_to_wire(info)))
}

/// `UpdateTenantInfo`.
pub async fn update_tenant_info(
    locker: &Locker,
    request: Request<pb::UpdateTenantInfoRequest>,
) -> Result<Response<pb::TenantInfo>, Status> {
    let ctx = request_context(&request);
    let m = request.into_inner();
    let patch = crate::domain::tenant_info::TenantInfoPatch {
        tenant: m.tenant,
        file_kind: m.file_kind,
        file_name: m.file_name,
        responsible_person: m.responsible_person,
        responsible_department: m.responsible_department,
        management_area: m.management_area,
        handling_area: m.handling_area,
    };
    let info = locker
        .update_tenant_info(&ctx, patch)
        .await
        .map_err(to_status)?;
    Ok(Response::new(info_to_wire(info)))
}

/// `Ledger`.
pub async fn ledger(
    locker: &Locker,
    request: Request<pb::LedgerRequest>,
) -> Result<Response<pb::LedgerResponse>, Status> {
    let ctx = request_context(&request);
    let ledger = locker
        .ledger(&ctx, &request.get_ref().tenant)
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::LedgerResponse {
        entries: ledger.into_iter().map(ledger_entry).collect(),
    }))
}

/// `UsageReport`.
pub async fn usage_report(
    locker: &Locker,
    request: Request<pb::UsageReportRequest>,
) -> Result<Response<pb::UsageReportResponse>, Status> {
    let ctx = request_context(&request);
    let m = request.get_ref();
    let (rows, scanned) = locker
        .usage_report(&ctx, ms(m.from_unix), ms(m.to_unix), &m.tenant)
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::UsageReportResponse {
        rows: rows
            .into_iter()
            .map(|r| pb::UsageRow {
                category: r.category.into(),
                action: r.action,
                purpose: r.purpose,
                operator_id: r.operator,
                tenant: r.tenant,
                count: r.count,
            })
            .collect(),
        entries_scanned: scanned,
    }))
}

/// `IncidentReport`.
pub async fn incident_report(
    locker: &Locker,
    request: Request<pb::IncidentReportRequest>,
) -> Result<Response<pb::IncidentReportResponse>, Status> {
    let ctx = request_context(&request);
    let m = request.get_ref();
    let report = locker
        .incident_report(&ctx, &m.operator_id, ms(m.from_unix), ms(m.to_unix))
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::IncidentReportResponse {
        operator_id: m.operator_id.clone(),
        unseals: report.unseals,
        subjects: report.handles.len() as u64,
        handles: report.handles,
        denied: report.denied,
        tenants: report.tenants,
    }))
}

/// `Disclose`: the number, when sent, stays in a zeroized buffer and goes nowhere but the
/// look-up.
pub async fn disclose(
    locker: &Locker,
    request: Request<pb::DisclosureRequest>,
) -> Result<Response<pb::DisclosureResponse>, Status> {
    let ctx = request_context(&request);
    let m = request.into_inner();
    // A request without a subject, or with a mode this build does not know, is refused by the
    // service, so that its refusal is audited like any other.
    let subject = m.subject.map(|subject| match subject {
        pb::disclosure_request::Subject::Handle(handle) => Subject::Handle(handle),
        pb::disclosure_request::Subject::Number(number) => {
            Subject::Number(zeroize::Zeroizing::new(number))
        }
    });
    let handlers = match pb::HandlersShown::try_from(m.handlers) {
        Ok(pb::HandlersShown::Name) => Some(HandlersShown::Name),
        Ok(pb::HandlersShown::Role) => Some(HandlersShown::Role),
        Err(_) => None,
    };
    let withheld = m
        .withheld
        .into_iter()
        .map(|w| vault_audit::disclosure::Withholding {
            item: w.item,
            ground: u8::try_from(w.ground).unwrap_or(u8::MAX),
            reason: w.reason,
        })
        .collect();
    let notice = locker
        .disclose(
            &ctx,
            DisclosureRequest {
                tenant: m.tenant,
                subject,
                reference: m.reference,
                from_ms: ms(m.from_unix),
                to_ms: ms(m.to_unix),
                handlers,
                withheld,
            },
        )
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::DisclosureResponse {
        held: notice.body.held,
        uses: notice.body.uses.len() as u64,
        notice_json: notice.to_json(),
    }))
}
