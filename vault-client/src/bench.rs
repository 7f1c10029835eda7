//! `vault-client bench`: load against a running daemon, in the spirit of redis-benchmark —
//! requests/s, latency percentiles and errors; with `--baseline`, a bare round trip (`Ping`)
//! and the key backend's raw unwrap rate measured in the same run, and the ratios to them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, ValueEnum};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;
use vault_client::{Client, ClientError, pb};

use crate::output::Format;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// Seal new numbers.
    Seal,
    /// Unseal existing records.
    Unseal,
    /// Look existing numbers up.
    Lookup,
    /// Four unseals to one seal (a payroll run that also registers new hires).
    Mixed,
    /// Unseal every record through one `UnsealBatch` stream per worker, again and again;
    /// requests/s counts items, latencies are per batch.
    UnsealBatch,
}

/// `bench` arguments.
#[derive(Debug, ClapArgs)]
pub struct BenchArgs {
    /// Operation.
    #[arg(long, value_enum, default_value_t = Op::Unseal)]
    pub op: Op,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Length of the measurement: seconds, or a duration such as `5s` or `2m`.
    #[arg(long, default_value = "10", value_parser = crate::args::parse_seconds)]
    pub duration: u64,
    /// Records sealed beforehand for unseal and lookup.
    #[arg(long, default_value_t = 1000)]
    pub records: usize,
    /// Purpose code (the token's operator must hold it).
    #[arg(long, default_value = "STAFF_WITHHOLDING")]
    pub purpose: String,
    /// Tenant.
    #[arg(long, default_value = "dev")]
    pub tenant: String,
    /// Also measure a bare round trip and the backend's unwrap rate, and print the ratios.
    #[arg(long, requires = "admin_token_file")]
    pub baseline: bool,
    /// An admin's token, for the backend measurement of --baseline.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,
}

/// A valid individual number from 11 random digits and the check digit.
fn random_number(rng: &SystemRandom) -> String {
    let mut bytes = [0u8; 11];
    let _ = rng.fill(&mut bytes);
    let first: String = bytes.iter().map(|b| char::from(b'0' + b % 10)).collect();
    let sum: u32 = first
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let n = i as u32 + 1;
            u32::from(b - b'0') * if n <= 6 { n + 1 } else { n - 5 }
        })
        .sum();
    let check = match sum % 11 {
        r if r <= 1 => 0,
        r => 11 - r,
    };
    format!("{first}{check}")
}

struct Measured {
    ok: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u32>,
}

impl Measured {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[index]) / 1000.0
    }
}

fn seal_request(tenant: &str, purpose: &str, number: String, n: u64) -> pb::SealRequest {
    pb::SealRequest {
        tenant: tenant.into(),
        subject_ref: format!("BENCH-{n}"),
        subject_kind: pb::SubjectKind::Staff as i32,
        purposes: vec![purpose.into()],
        number,
        verification: None,
    }
}

/// Runs `concurrency` workers for `duration`, each repeating `call`.
async fn drive<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for worker in 0..concurrency.max(1) {
        let call = Arc::clone(&call);
        workers.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            let mut n = worker as u64 * 1_000_000_000;
            while Instant::now() < deadline {
                let t = Instant::now();
                if call(n).await {
                    ok += 1;
                    latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    errors += 1;
                }
                n += 1;
            }
            (ok, errors, latencies)
        }));
    }
    let mut measured = Measured {
        ok: 0,
        errors: 0,
        seconds: 0.0,
        latencies_us: Vec::new(),
    };
    for worker in workers {
        if let Ok((ok, errors, latencies)) = worker.await {
            measured.ok += ok;
            measured.errors += errors;
            measured.latencies_us.extend(latencies);
        }
    }
    measured.seconds = started.elapsed().as_secs_f64();
    measured.latencies_us.sort_unstable();
    measured
}

/// Runs the benchmark and prints the result.
pub async fn run(
    client: Client,
    args: BenchArgs,
    format: Format,
    admin: Option<Client>,
) -> Result<(), ClientError> {
    let rng = SystemRandom::new();
    let mut setup = client.clone();
    let mut records: Vec<(String, String)> = Vec::with_capacity(args.records);
    if args.op != Op::Seal {
        // One SealBatch stream: a 100k-record setup takes seconds rather than minutes.
        use futures::StreamExt;
        let numbers: Vec<String> = (0..args.records).map(|_| random_number(&rng)).collect();
        let requests: Vec<pb::SealRequest> = numbers
            .iter()
            .zip(0u64..)
            .map(|(number, n)| seal_request(&args.tenant, &args.purpose, number.clone(), n))
            .collect();
        let mut results = setup
            .locker
            .seal_batch(futures::stream::iter(requests))
            .await?
            .into_inner();
        for number in numbers {
            let sealed = results
                .next()
                .await
                .ok_or_else(|| ClientError::BenchSetup("the seal batch ended early".into()))??;
            match (sealed.sealed, sealed.error) {
                (Some(response), None) => records.push((response.handle, number)),
                (_, error) => {
                    let error = error.unwrap_or_default();
                    return Err(ClientError::BenchSetup(format!(
                        "seal refused: {}: {}",
                        error.code, error.message
                    )));
                }
            }
        }
    }
    let records = Arc::new(records);
    let duration = Duration::from_secs(args.duration.max(1));
    if args.op == Op::UnsealBatch {
        let measured = batch_unseal(
            client.clone(),
            Arc::clone(&records),
            &args.purpose,
            args.concurrency,
            duration,
        )
        .await;
        print(format, &args, &measured, None);
        return Ok(());
    }
    let (tenant, purpose, op) = (args.tenant.clone(), args.purpose.clone(), args.op);
    let measured = drive(args.concurrency, duration, move |n| {
        let (mut client, records, tenant, purpose) = (
            client.clone(),
            Arc::clone(&records),
            tenant.clone(),
            purpose.clone(),
        );
        async move {
            let pick =
                |n: u64| &records[(n as usize).wrapping_mul(2_654_435_761) % records.len().max(1)];
            let seal = op == Op::Seal || (op == Op::Mixed && n % 5 == 0);
            if seal {
                let number = random_number(&SystemRandom::new());
                client
                    .locker
                    .seal(seal_request(&tenant, &purpose, number, n))
                    .await
                    .is_ok()
            } else if op == Op::Lookup {
                let (_, number) = pick(n);
                client
                    .locker
                    .lookup(pb::LookupRequest {
                        tenant: tenant.clone(),
                        number: number.clone(),
                    })
                    .await
                    .is_ok()
            } else {
                let (handle, _) = pick(n);
                client
                    .locker
                    .unseal(pb::UnsealRequest {
                        handle: handle.clone(),
                        purpose: purpose.clone(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().number.len() == 12)
            }
        }
    })
    .await;

    let mut baseline = None;
    if let Some(admin) = admin {
        let pinger = admin.clone();
        let echo = drive(args.concurrency, duration, move |_| {
            let mut client = pinger.clone();
            async move { client.locker.ping(pb::PingRequest {}).await.is_ok() }
        })
        .await;
        let mut admin = admin;
        let backend = admin
            .admin
            .bench_backend(pb::BenchBackendRequest {
                tenant: args.tenant.clone(),
                count: 5000,
                concurrency: u32::try_from(args.concurrency).unwrap_or(32),
            })
            .await?
            .into_inner();
        baseline = Some((echo.rps(), backend.unwraps_per_second, backend.backend));
    }
    print(format, &args, &measured, baseline);
    Ok(())
}

/// `concurrency` streams, each unsealing all `records` per batch until `duration` is over.
async fn batch_unseal(
    client: Client,
    records: Arc<Vec<(String, String)>>,
    purpose: &str,
    concurrency: usize,
    duration: Duration,
) -> Measured {
    use futures::StreamExt;
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (mut client, records, purpose) =
            (client.clone(), Arc::clone(&records), purpose.to_owned());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let t = Instant::now();
                let requests: Vec<pb::UnsealRequest> = records
                    .iter()
                    .map(|(handle, _)| pb::UnsealRequest {
                        handle: handle.clone(),
                        purpose: purpose.clone(),
                    })
                    .collect();
                match client
                    .locker
                    .unseal_batch(futures::stream::iter(requests))
                    .await
                {
                    Ok(response) => {
                        let mut stream = response.into_inner();
                        while let Some(item) = stream.next().await {
                            match item {
                                Ok(result) if result.error.is_none() => ok += 1,
                                _ => errors += 1,
                            }
                        }
                        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Err(_) => errors += 1,
                }
            }
            (ok, errors, latencies)
        }));
    }
    let mut measured = Measured {
        ok: 0,
        errors: 0,
        seconds: 0.0,
        latencies_us: Vec::new(),
    };
    for worker in workers {
        if let Ok((ok, errors, latencies)) = worker.await {
            measured.ok += ok;
            measured.errors += errors;
            measured.latencies_us.extend(latencies);
        }
    }
    measured.seconds = started.elapsed().as_secs_f64();
    measured.latencies_us.sort_unstable();
    measured
}

fn print(format: Format, args: &BenchArgs, m: &Measured, baseline: Option<(f64, f64, String)>) {
    let op = args
        .op
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let rps = m.rps();
    let (echo, backend, backend_name) = baseline.clone().unwrap_or((0.0, 0.0, String::new()));
    let ratio_echo = (echo > 0.0).then(|| rps / echo);
    let ratio_model = (echo > 0.0 && backend > 0.0).then(|| rps * (1.0 / echo + 1.0 / backend));
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "op": op, "concurrency": args.concurrency, "duration_s": m.seconds, "records": args.records,
                "requests": m.ok, "rps": rps, "errors": m.errors,
                "p50_ms": m.percentile_ms(0.50), "p90_ms": m.percentile_ms(0.90),
                "p99_ms": m.percentile_ms(0.99), "max_ms": m.percentile_ms(1.0),
                "echo_rps": baseline.as_ref().map(|_| echo),
                "backend_unwrap_rps": baseline.as_ref().map(|_| backend),
                "backend": baseline.as_ref().map(|_| backend_name.clone()),
                "ratio_echo": ratio_echo, "ratio_model": ratio_model,
            })
        ),
        Format::Text => {
            println!(
                "{op}: {} requests in {:.1} s, {} in flight",
                m.ok, m.seconds, args.concurrency
            );
            println!("  {rps:.0} requests/s, {} errors", m.errors);
            println!(
                "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                m.percentile_ms(0.5),
                m.percentile_ms(0.9),
                m.percentile_ms(0.99),
                m.percentile_ms(1.0)
            );
            if baseline.is_some() {
                println!(
                    "  baseline: ping {echo:.0}/s, {backend_name} backend unwrap {backend:.0}/s"
                );
                println!(
                    "  ratio_echo {:.3}  ratio_model {:.3}",
                    ratio_echo.unwrap_or(0.0),
                    ratio_model.unwrap_or(0.0)
                );
            }
        }
    }
}
