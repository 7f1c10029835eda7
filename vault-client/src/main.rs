//! `vault-client`: the operator and admin CLI of MyNumber Locker.
//!
//! Numbers are read from standard input, never from arguments (which other users can see in
//! the process list and which shells keep in history). In text mode `seal` prints only the
//! handle and `unseal` only the number, so the output can be piped.

#![forbid(unsafe_code)]

mod args;
mod batch;
mod bench;
mod cli;
mod commands;
mod output;

mod reports;

use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use secrecy::SecretString;
use vault_client::{Client, ClientConfig, ClientError, read_token_file};
use zeroize::Zeroizing;

use crate::cli::{Args, Command};
use crate::commands::lifecycle::CorrectCommand;

fn token(args: &Args) -> Result<Option<SecretString>, ClientError> {
    if let Some(path) = &args.token_file {
        return read_token_file(path).map(Some);
    }
    Ok(std::env::var("LOCKER_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| SecretString::from(t.trim().to_owned())))
}

/// Reads a number from standard input; only surrounding whitespace is removed (the daemon
/// validates and normalises).
fn number_from_stdin() -> Result<Zeroizing<String>, String> {
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("cannot read the number from standard input: {e}"))?;
    let trimmed = Zeroizing::new(input.trim().to_owned());
    if trimmed.is_empty() {
        return Err(
            "no number on standard input (the number is read from stdin, never from arguments)"
                .into(),
        );
    }
    Ok(trimmed)
}

/// Why the CLI stopped, for its exit status (documented in `--help` and the README).
enum Failure {
    /// The command line asks for something impossible (2, as clap's own usage errors).
    Usage(String),
    /// Something on this machine: a file, the connection (1).
    Local(String),
    /// The daemon answered with an error (3 to 8 by class).
    Server(tonic::Status),
    /// The change was accepted but held for another admin's approval (9): not in force yet,
    /// as standard output said.
    Held,
    /// Standard output's reader went away (0, silently).
    ClosedPipe,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        match error {
            // The reader went away (`| head -1`): stop quietly, as other Unix tools do.
            ClientError::WriteFile { source, .. }
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                Failure::ClosedPipe
            }
            ClientError::Status(status) => Failure::Server(status),
            ClientError::Usage(message) => Failure::Usage(message),
            other => Failure::Local(other.to_string()),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Local(message)
    }
}

/// Exit status of a server error, by what the caller can do about it.
fn exit_code(code: tonic::Code) -> u8 {
    use tonic::Code;
    match code {
        Code::Ok => 0,
        Code::Unauthenticated | Code::PermissionDenied => 3,
        Code::NotFound => 4,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange => 5,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled => 6,
        Code::ResourceExhausted => 7,
        Code::DataLoss | Code::Internal | Code::Unknown | Code::Unimplemented => 8,
    }
}

/// Prints why the command failed: a line of text, or with `--output json` one JSON object
/// (`code`, `message`, `reason` from the server's google.rpc.ErrorInfo) on standard error.
fn report(failure: &Failure, format: output::Format) -> u8 {
    let (code, message, reason, exit) = match failure {
        // Standard output said so, with the request to approve; nothing went wrong.
        Failure::Held => return 9,
        Failure::ClosedPipe => return 0,
        Failure::Usage(message) => ("USAGE", message.clone(), String::new(), 2),
        Failure::Local(message) => ("LOCAL", message.clone(), String::new(), 1),
        Failure::Server(status) => (
            vault_client::code_name(status.code()),
            status.message().to_owned(),
            vault_client::reason_of(status),
            exit_code(status.code()),
        ),
    };
    match format {
        output::Format::Json => eprintln!(
            "{}",
            serde_json::json!({"error": {"code": code, "message": message, "reason": reason}})
        ),
        output::Format::Text if matches!(failure, Failure::Server(_)) => {
            eprintln!("error: {code}: {message}");
        }
        output::Format::Text => eprintln!("error: {message}"),
    }
    exit
}

/// A reader that went away (`vault-client audit tail | head -1`) is not an error: stop quietly
/// instead of panicking on the broken pipe, as other Unix tools do.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Environment variables this client does not read, each with what it reads instead: HashiCorp
/// Vault's (an admin's shell often has them) and this client's names before the `LOCKER_`
/// prefix. Never read, so a Vault token is never sent to the locker.
const FOREIGN_ENVIRONMENT: [(&str, &str); 9] = [
    ("VAULT_ADDR", "LOCKER_ADDR"),
    ("VAULT_TOKEN", "LOCKER_TOKEN or LOCKER_TOKEN_FILE"),
    ("VAULT_CACERT", "LOCKER_CA"),
    ("VAULT_CLIENT_CERT", "LOCKER_CLIENT_CERT"),
    ("VAULT_CLIENT_KEY", "LOCKER_CLIENT_KEY"),
    ("VAULT_ENDPOINT", "LOCKER_ADDR"),
    ("VAULT_TOKEN_FILE", "LOCKER_TOKEN_FILE"),
    ("VAULT_CA", "LOCKER_CA"),
    ("VAULT_PDF_FONT", "LOCKER_PDF_FONT"),
];

/// One line on standard error for each variable of [`FOREIGN_ENVIRONMENT`] that is set while
/// none of the ones read instead is (never the value).
fn foreign_environment_hints() {
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    for (theirs, ours) in FOREIGN_ENVIRONMENT {
        if set(theirs) && !ours.split(" or ").any(set) {
            eprintln!(
                "hint: {theirs} is set but not read (HashiCorp Vault's, or this client's old name); this client reads {ours}"
            );
        }
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    foreign_environment_hints();
    let args = Args::parse();
    let format = args.output;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(report(&failure, format)),
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    if let Command::Completion { shell } = &args.command {
        let mut command = <Args as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut command, "vault-client", &mut std::io::stdout());
        return Ok(());
    }
    if let Some(result) = cli::offline(&args.command, args.output) {
        return result.map_err(Failure::Local);
    }
    let number = match &args.command {
        Command::Seal(seal) if seal.batch.is_none() => Some(number_from_stdin()?),
        Command::Lookup { .. } | Command::Correct(CorrectCommand::Request { .. }) => {
            Some(number_from_stdin()?)
        }
        Command::Disclosure(c) if commands::disclosure::reads_number(c) => {
            Some(number_from_stdin()?)
        }
        _ => None,
    };
    let config = ClientConfig {
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        ..ClientConfig::new(args.endpoint.clone(), token(&args)?)
    };
    if let Command::Health { wait } = args.command {
        return Ok(commands::health::run(&config, wait, args.output).await?);
    }
    let client = Client::connect(&config).await?;
    if let Command::Bench(bench) = args.command {
        let admin = match &bench.admin_token_file {
            Some(path) => {
                let token = read_token_file(path)?;
                let admin_config = ClientConfig {
                    token: Some(token),
                    ..config.clone()
                };
                Some(Client::connect(&admin_config).await?)
            }
            None => None,
        };
        return Ok(bench::run(client, bench, args.output, admin).await?);
    }
    match cli::execute(client, args.command, args.output, number).await? {
        commands::Outcome::Done => Ok(()),
        commands::Outcome::Held => Err(Failure::Held),
    }
}
