//! The Prometheus endpoint: on its own listener, the families operators graph and alert on,
//! and never a number, a token or a subject in it.

use std::io::{Read, Write};

use vault_client::pb;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::seal_request;
use vault_tests::{Daemon, DaemonOptions};

/// A dev daemon's options with metrics on a free loopback port.
fn with_metrics() -> DaemonOptions {
    DaemonOptions {
        args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
        ..DaemonOptions::default()
    }
}

/// The metrics address `daemon` printed.
fn metrics_addr(daemon: &Daemon) -> String {
    daemon
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("metrics listening on "))
        .expect("the metrics address is printed")
        .to_owned()
}

fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_commits_backend_and_refusals_without_secrets() {
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("data"), with_metrics());
    let addr = metrics_addr(&daemon);
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(4711);
    let subject = "EMP-SECRET-SUBJECT";
    let handle = handler
        .locker
        .seal(seal_request(
            "dev",
            subject,
            &number,
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    for _ in 0..3 {
        handler
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: "STAFF_WITHHOLDING".into(),
            })
            .await
            .expect("unseal");
    }
    let mut junk = daemon
        .client(Some("mnt_0123456789abcdef_00".to_owned().into()))
        .await;
    let _ = junk
        .locker
        .unseal(pb::UnsealRequest {
            handle: handle.clone(),
            purpose: "STAFF_WITHHOLDING".into(),
        })
        .await
        .expect_err("junk");

    let text = scrape(&addr);
    for expected in [
        r#"locker_calls_total{rpc="Unseal",code="OK"} 3"#,
        r#"locker_calls_total{rpc="Seal",code="OK"} 1"#,
        r#"locker_calls_total{rpc="Unseal",code="UNAUTHENTICATED"} 1"#,
        "locker_call_duration_seconds_bucket{",
        "locker_audit_commit_duration_seconds_count",
        "locker_audit_commit_batch_size_bucket",
        "locker_audit_writer_queue_depth",
        r#"locker_key_backend_duration_seconds_count{op="unwrap"}"#,
        "locker_serving 1",
        r#"locker_refused_calls_total{reason="TOKEN_MALFORMED"} 1"#,
        // There before their first event, so rates and alerting rules see a series.
        r#"locker_key_backend_errors_total{op="unwrap"} 0"#,
        r#"locker_alerts_total{rule="rate_limited"} 0"#,
        "locker_build_info{version=",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    let token = daemon.dev_token("dev-handler");
    for secret in [
        number.as_str(),
        subject,
        handle.as_str(),
        token.expose_secret(),
    ] {
        assert!(!text.contains(secret), "a secret in the metrics");
    }
}

/// The body of `GET /metrics` (HTTP/1.0: no chunked encoding to undo).
fn scrape_body(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

/// Parses every scrape in `dir` with Python prometheus_client's OpenMetrics parser (a real
/// Prometheus parser, not ours) and returns, per file in name order, each sample as
/// `name{labels} -> value`.
fn parse_with_prometheus_client(
    dir: &std::path::Path,
) -> Vec<std::collections::BTreeMap<String, f64>> {
    let script = r#"
import json, os, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for name in sorted(os.listdir(sys.argv[1])):
    text = open(os.path.join(sys.argv[1], name), encoding="utf-8").read()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    out.append(samples)
print(json.dumps(out))
"#;
    let output = std::process::Command::new(vault_tests::python::interpreter())
        .args(["-c", script])
        .arg(dir)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "prometheus_client refused a scrape: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("parsed samples")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_under_load_parse_and_match_the_calls_the_records_and_the_rewrap() {
    use vault_tests::rpc::{start_from_config, tenant_with_operator, wait_for_rewrap};
    const TASKS: u64 = 4;
    const UNSEALS: u64 = 100;
    const RECORDS: u64 = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (daemon, mut admin, mut approver) = start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\n[metrics]\nlisten = \"127.0.0.1:0\"\nrecords_refresh_secs = 1\n",
            data.display()
        ),
        DaemonOptions::default(),
    )
    .await;
    let addr = metrics_addr(&daemon);
    let token = tenant_with_operator(
        &mut admin,
        &mut approver,
        "t1",
        "payroll",
        pb::Role::Service,
    )
    .await;
    let mut service = daemon.client(Some(token.clone())).await;
    let mut handles = Vec::new();
    for i in 0..RECORDS {
        let sealed = service
            .locker
            .seal(seal_request(
                "t1",
                &format!("E{i}"),
                &valid_number(9100 + i),
                &["STAFF_WITHHOLDING"],
            ))
            .await
            .expect("seal")
            .into_inner();
        handles.push(sealed.handle);
    }
    for handle in &handles[..2] {
        service
            .locker
            .retire(pb::RetireRequest {
                handle: handle.clone(),
                left_on: vault_tests::rpc::jst_date_in(0),
            })
            .await
            .expect("retire");
    }

    // Load: TASKS clients unsealing at once while the endpoint is scraped.
    let mut load = Vec::new();
    for task in 0..TASKS {
        let mut client = daemon.client(Some(token.clone())).await;
        let handles = handles.clone();
        load.push(tokio::spawn(async move {
            for i in 0..UNSEALS {
                let handle = handles[2 + ((task * UNSEALS + i) % (RECORDS - 2)) as usize].clone();
                client
                    .locker
                    .unseal(pb::UnsealRequest {
                        handle,
                        purpose: "STAFF_WITHHOLDING".into(),
                    })
                    .await
                    .expect("unseal");
            }
        }));
    }
    let scrapes = dir.path().join("scrapes");
    std::fs::create_dir_all(&scrapes).expect("scrapes");
    let mut taken = 0;
    while load.iter().any(|t| !t.is_finished()) {
        let addr = addr.clone();
        let body = tokio::task::spawn_blocking(move || scrape_body(&addr))
            .await
            .expect("scrape");
        std::fs::write(scrapes.join(format!("{taken:04}.txt")), body).expect("write scrape");
        taken += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for task in load {
        task.await.expect("load task");
    }
    assert!(taken >= 2, "scraped during the load: {taken}");

    // A rotation: its progress shows per tenant.
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "t1".into(),
        })
        .await
        .expect("rotate");
    wait_for_rewrap(&mut admin, "t1", 1).await;
    // Rewrap progress is read every second here, records counted every second: wait a tick.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let body = scrape_body(&addr);
        if body.contains(r#"locker_rewrap_running{tenant="t1"} 0"#)
            && body.contains(r#"locker_records{state="retired"} 2"#)
        {
            std::fs::write(scrapes.join("9999.txt"), body).expect("write scrape");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "figures never refreshed:\n{body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let parsed = parse_with_prometheus_client(&scrapes);
    let unseals_ok = |samples: &std::collections::BTreeMap<String, f64>| {
        samples
            .get(r#"locker_calls_total{code="OK",rpc="Unseal"}"#)
            .copied()
            .unwrap_or(0.0)
    };
    // Counters only grow, scrape after scrape, and end at exactly the calls made.
    let series: Vec<f64> = parsed.iter().map(unseals_ok).collect();
    assert!(series.windows(2).all(|w| w[0] <= w[1]), "{series:?}");
    let last = parsed.last().expect("a final scrape");
    assert_eq!(unseals_ok(last), (TASKS * UNSEALS) as f64);
    assert_eq!(
        last.get(r#"locker_calls_total{code="OK",rpc="Seal"}"#),
        Some(&(RECORDS as f64))
    );
    assert_eq!(
        last.get(r#"locker_records{state="active"}"#),
        Some(&((RECORDS - 2) as f64))
    );
    assert_eq!(last.get(r#"locker_records{state="retired"}"#), Some(&2.0));
    // The retired records moved to their disposal-epoch key: the rotation rewraps the others.
    let total = last
        .get(r#"locker_rewrap_records_total{tenant="t1"}"#)
        .copied();
    assert_eq!(total, Some((RECORDS - 2) as f64), "{last:#?}");
    assert_eq!(
        last.get(r#"locker_rewrap_records_done{tenant="t1"}"#)
            .copied(),
        total
    );
    let audit_commits = last
        .get("locker_audit_commit_duration_seconds_count{}")
        .copied()
        .unwrap_or(0.0);
    assert!(audit_commits >= 1.0, "{last:#?}");
}

/// `curl` against the metrics endpoint: the HTTP status it got (0 when no HTTP answer came).
fn curl_status(args: &[&str]) -> (u16, String) {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (scripts/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    (code.trim().parse().unwrap_or(0), format!("{body}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_tls_answer_only_the_bearer_of_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = vault_tests::pki::Pki::create(dir.path());
    let data = dir.path().join("data");
    let bearer = dir.path().join("metrics.token");
    std::fs::write(&bearer, "scrape-me-0123456789abcdef\n").expect("token");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n[metrics]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nbearer_token_file = \"{}\"\n",
        data.display(),
        pki.server.0.display(),
        pki.server.1.display(),
        bearer.display()
    );
    let (daemon, _admin, _approver) =
        vault_tests::rpc::start_from_config(&data, &text, DaemonOptions::default()).await;
    let addr = daemon
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("metrics listening on "))
        .and_then(|rest| rest.strip_suffix(" (TLS)"))
        .expect("the TLS metrics address is printed")
        .to_owned();
    let port = addr.rsplit_once(':').expect("port").1;
    let url = format!("https://localhost:{port}/metrics");
    let ca = pki.ca.to_str().expect("utf8");

    let (code, body) = curl_status(&[
        "--cacert",
        ca,
        "-H",
        "Authorization: Bearer scrape-me-0123456789abcdef",
        &url,
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("# TYPE locker_"), "{body}");
    // Without the token, or with another: 401 and no metrics.
    for header in [
        "X-Nothing: 1",
        "Authorization: Bearer scrape-me-0123456789abcdeX",
    ] {
        let (code, body) = curl_status(&["--cacert", ca, "-H", header, &url]);
        assert_eq!(code, 401, "{header}: {body}");
        assert!(!body.contains("locker_"), "{body}");
    }
    // Plain HTTP gets no metrics.
    let (code, _) = curl_status(&[
        "-H",
        "Authorization: Bearer scrape-me-0123456789abcdef",
        &format!("http://127.0.0.1:{port}/metrics"),
    ]);
    assert_ne!(code, 200);
    // A client that opens a connection and never speaks TLS holds up no one.
    let _stalled = std::net::TcpStream::connect(&addr).expect("connect");
    let (code, _) = curl_status(&[
        "--cacert",
        ca,
        "-H",
        "Authorization: Bearer scrape-me-0123456789abcdef",
        &url,
    ]);
    assert_eq!(code, 200);
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_plaintext_to_the_network_need_public_and_are_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n[metrics]\nlisten = \"0.0.0.0:0\"\n",
        data.display()
    );
    let config = dir.path().join("refused.toml");
    std::fs::write(&config, &base).expect("config");
    let refused = std::process::Command::new(vault_tests::binary_path("vault-daemon"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("metrics.listen is not a loopback address"),
        "{stderr}"
    );
    assert!(!data.exists(), "a refused configuration creates nothing");

    let (daemon, _admin, _approver) = vault_tests::rpc::start_from_config(
        &data,
        &format!("{base}public = true\n"),
        DaemonOptions::default(),
    )
    .await;
    let log = daemon.log();
    assert!(
        log.contains("WARN") && log.contains("metrics are served in plaintext to the network"),
        "{log}"
    );
    drop(daemon);
}

/// A service whose last token runs out stops that day: per role, the seconds until the first
/// operator is left without a usable token are a gauge from the start (no operator id in a
/// label), and a last token ending within two weeks is named in a WARN line (never the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_last_token_running_out_is_a_gauge_and_a_warning() {
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let options = with_metrics();
    let mut daemon = Daemon::start(&data, options.clone());
    let gauge = |body: &str, role: &str| {
        body.lines().find_map(|line| {
            line.strip_prefix(&format!("locker_token_expiry_seconds{{role=\"{role}\"}} "))
                .and_then(|value| value.trim().parse::<i64>().ok())
        })
    };
    // The first look is made at start; a scrape may just precede it.
    let gauge_of = |daemon: &Daemon, role: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(value) = gauge(&scrape_body(&metrics_addr(daemon)), role) {
                return value;
            }
            assert!(std::time::Instant::now() < deadline, "no gauge for {role}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let handler_left = gauge_of(&daemon, "handler");
    assert!(handler_left > 14 * 24 * 3600, "{handler_left}");
    assert!(!daemon.log().contains("expires soon"), "{}", daemon.log());

    // A payroll service set up with dual control and a token of one hour (the daemon looks
    // at the tokens at start, then every minute: a restart makes it look now).
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    let token = vault_tests::rpc::operator_token(
        &mut admin,
        &mut approver,
        "dev",
        "payroll",
        pb::Role::Service,
    )
    .await;
    assert!(daemon.stop().success());
    let daemon = Daemon::start(&data, options);
    let service_left = gauge_of(&daemon, "service");
    assert!((0..=3600).contains(&service_left), "{service_left}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (log, warning) = loop {
        let log = daemon.log();
        let found = log
            .lines()
            .find(|line| line.contains("expires soon") && line.contains("payroll"))
            .map(str::to_owned);
        if let Some(warning) = found {
            break (log, warning);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no warning for payroll: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!warning.contains(token.expose_secret()), "{warning}");
    assert!(
        !log.lines()
            .any(|line| line.contains("expires soon") && line.contains("dev-handler")),
        "{log}"
    );
}

/// After a restart the records gauge is right at once: counted when the daemon starts, never
/// 0 for a minute while the store holds records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_gauge_is_right_from_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let options = with_metrics();
    let mut daemon = Daemon::start(&data, options.clone());
    let mut handler = daemon.dev_client("dev-handler").await;
    for i in 0..3 {
        handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("G{i}"),
                &valid_number(6100 + i),
                &["STAFF_WITHHOLDING"],
            ))
            .await
            .expect("seal");
    }
    assert!(daemon.stop().success());
    let daemon = Daemon::start(&data, options);
    let started = std::time::Instant::now();
    let addr = metrics_addr(&daemon);
    let active = loop {
        let body = scrape_body(&addr);
        let active = body.lines().find_map(|line| {
            line.strip_prefix("locker_records{state=\"active\"} ")
                .map(|value| value.trim().to_owned())
        });
        if let Some(active) = active {
            break active;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "no records gauge 5 s after start:\n{body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(active, "3", "the first figure shown is the count, never 0");
}

/// The process family every exporter has: CPU seconds, memory, file descriptors, start time,
/// read from /proc at the scrape; the exposition still ends with one `# EOF`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_family_is_exported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("data"), with_metrics());
    let addr = metrics_addr(&daemon);
    let figure = |body: &str, name: &str| -> f64 {
        body.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
    };
    // CPU time is counted in clock ticks (10 ms): a daemon just started on a busy machine may
    // not have one yet. It shows one once the daemon has worked a little.
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let body = loop {
        let body = scrape_body(&addr);
        if figure(&body, "process_cpu_seconds_total") > 0.0 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no CPU time counted:\n{body}"
        );
        for _ in 0..20 {
            auditor
                .admin
                .list_purposes(pb::ListPurposesRequest {})
                .await
                .expect("a call");
        }
    };
    let value = |name: &str| figure(&body, name);
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(
        (now - 120.0..=now + 1.0).contains(&started),
        "started {started}, now {now}"
    );
    assert_eq!(body.matches("# EOF").count(), 1, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
}

/// A new seal costs one backend MAC (its blind index), not two: the look-up's index under the
/// active keys is the one the record is stored under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_seal_costs_one_backend_mac() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("data"), with_metrics());
    let addr = metrics_addr(&daemon);
    let macs = || {
        scrape_body(&addr)
            .lines()
            .find_map(|line| {
                line.strip_prefix("locker_key_backend_duration_seconds_count{op=\"mac\"} ")
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut handler = daemon.dev_client("dev-handler").await;
    let before = macs();
    for i in 0..10 {
        handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("M{i}"),
                &valid_number(7300 + i),
                &["STAFF_WITHHOLDING"],
            ))
            .await
            .expect("seal");
    }
    assert_eq!(macs() - before, 10, "backend MACs for 10 new seals");
}
