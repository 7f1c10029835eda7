//! `vault-client`: the operator and admin CLI of MyNumber Locker.
//!
//! Numbers are read from standard input, never from arguments (which other users can see in
//! the process list and which shells keep in history). In text mode `seal` prints only the
//! handle and `unseal` only the number, so the output can be piped.

#![forbid(unsafe_code)]

mod batch;
mod bench;
mod cli;
mod lifecycle_cli;
mod output;
mod reports;
mod requests_cli;

use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use secrecy::SecretString;
use vault_client::{Client, ClientConfig, ClientError, read_token_file};
use zeroize::Zeroizing;

use crate::cli::{Args, Command, CorrectCommand};

fn token(args: &Args) -> Result<Option<SecretString>, ClientError> {
    if let Some(path) = &args.token_file {
        return read_token_file(path).map(Some);
    }
    Ok(std::env::var("VAULT_TOKEN")
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

fn main() -> ExitCode {
    let args = Args::parse();
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
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(result) = cli::offline(&args.command, args.output) {
        return result;
    }
    let number = match &args.command {
        Command::Seal(seal) if seal.batch.is_none() => Some(number_from_stdin()?),
        Command::Lookup { .. } | Command::Correct(CorrectCommand::Request { .. }) => {
            Some(number_from_stdin()?)
        }
        _ => None,
    };
    let config = ClientConfig {
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        ..ClientConfig::new(
            args.endpoint.clone(),
            token(&args).map_err(|e| e.to_string())?,
        )
    };
    let client = Client::connect(&config).await.map_err(|e| e.to_string())?;
    if let Command::Bench(bench) = args.command {
        let admin = match &bench.admin_token_file {
            Some(path) => {
                let token = read_token_file(path).map_err(|e| e.to_string())?;
                let admin_config = ClientConfig {
                    token: Some(token),
                    ..config.clone()
                };
                Some(
                    Client::connect(&admin_config)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            None => None,
        };
        return bench::run(client, bench, args.output, admin)
            .await
            .map_err(|e| e.to_string());
    }
    cli::execute(client, args.command, args.output, number)
        .await
        .map_err(|e| e.to_string())
}
