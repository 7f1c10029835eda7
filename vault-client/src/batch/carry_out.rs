//! Where unsealed numbers may go (規程第35条: carried out only encrypted and password-protected):
//! an AES-256 ZIP under a password read from a file or a prompt (never the command line), a
//! plaintext file only when asked for by name, or standard output only when it is a terminal
//! or a pipe — never a file by redirection, which would be a plaintext carry-out unawares.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vault_client::{ClientError, pb};
use zeroize::Zeroizing;

/// Shortest ZIP password accepted: AES-256 is only as strong as the password that derives it.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The entry inside the ZIP (named by the output format).
pub const ZIP_ENTRY_CSV: &str = "numbers.csv";
/// The entry inside the ZIP with `--output json`.
pub const ZIP_ENTRY_JSON: &str = "numbers.jsonl";

/// Where the numbers of `unseal --batch` go.
pub enum Destination {
    /// Standard output (a terminal or a pipe).
    Stdout,
    /// A plaintext file the user named with `--plaintext-out`.
    PlaintextFile(PathBuf),
    /// An AES-256 ZIP.
    Zip {
        /// The file.
        path: PathBuf,
        /// Its password.
        password: Zeroizing<String>,
    },
}

/// A file that left the locker, to be recorded.
pub struct CarriedOut {
    /// The file.
    pub path: PathBuf,
    /// How it protects the numbers.
    pub format: pb::CarryOutFormat,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Usage(format!("{}: {e}", path.display()))
}

/// Whether standard output is a regular file (`> numbers.csv`).
pub fn stdout_is_a_file() -> bool {
    use std::os::fd::AsFd;
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .and_then(|file| file.metadata())
        .is_ok_and(|meta| meta.is_file())
}

/// The ZIP password: the first line of `file`, or typed twice at a prompt.
pub fn password(file: Option<&Path>) -> Result<Zeroizing<String>, ClientError> {
    let password = match file {
        Some(path) => {
            let mut text = Zeroizing::new(String::new());
            File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| io_error(path, e))?;
            Zeroizing::new(text.lines().next().unwrap_or_default().to_owned())
        }
        None => {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                return Err(ClientError::Usage(
                    "--zip needs --password-file FILE, or a terminal to ask for the password on"
                        .into(),
                ));
            }
            let first = Zeroizing::new(
                rpassword::prompt_password("ZIP password: ")
                    .map_err(|e| ClientError::Usage(format!("cannot read the password: {e}")))?,
            );
            let again = Zeroizing::new(
                rpassword::prompt_password("again: ")
                    .map_err(|e| ClientError::Usage(format!("cannot read the password: {e}")))?,
            );
            if first != again {
                return Err(ClientError::Usage("the passwords differ".into()));
            }
            first
        }
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ClientError::Usage(format!(
            "the ZIP password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(password)
}

/// A new file only its owner can read; an existing one is never overwritten.
fn create_private(path: &Path) -> Result<File, ClientError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))
}

/// The open destination, written row by row.
pub enum Sink {
    /// Standard output.
    Stdout(std::io::Stdout),
    /// A plaintext file.
    Plain(BufWriter<File>, PathBuf),
    /// The encrypted entry of a ZIP being written.
    Zip(Box<zip::ZipWriter<zip::write::StreamWriter<File>>>, PathBuf),
}

impl Sink {
    /// Opens `destination`; `entry` names the file inside a ZIP.
    pub fn open(destination: &Destination, entry: &str) -> Result<Sink, ClientError> {
        match destination {
            Destination::Stdout => Ok(Sink::Stdout(std::io::stdout())),
            Destination::PlaintextFile(path) => Ok(Sink::Plain(
                BufWriter::new(create_private(path)?),
                path.clone(),
            )),
            Destination::Zip { path, password } => {
                // Written as a stream (sizes in a data descriptor) because then the zip crate
                // keeps the entry AE-2: no CRC-32 of the plaintext, which for a file of a few
                // numbers would narrow them down without the password. A seekable writer
                // switches entries of 20 bytes or more to AE-1, which stores the CRC.
                let mut zip = zip::ZipWriter::new_stream(create_private(path)?);
                let options = zip::write::FileOptions::<()>::default()
                    .last_modified_time(now_in_japan())
                    .compression_method(zip::CompressionMethod::Deflated)
                    .unix_permissions(0o600)
                    .with_aes_encryption(zip::AesMode::Aes256, password.as_str());
                zip.start_file(entry, options)
                    .map_err(|e| io_error(path, e))?;
                Ok(Sink::Zip(Box::new(zip), path.clone()))
            }
        }
    }

    /// Closes the destination; for a file, what to record of it.
    pub fn finish(self) -> Result<Option<CarriedOut>, ClientError> {
        let (path, format) = match self {
            Sink::Stdout(mut out) => {
                out.flush().map_err(|e| io_error(Path::new("stdout"), e))?;
                return Ok(None);
            }
            Sink::Plain(mut out, path) => {
                out.flush()
                    .and_then(|()| out.get_ref().sync_all())
                    .map_err(|e| io_error(&path, e))?;
                (path, pb::CarryOutFormat::Plaintext)
            }
            Sink::Zip(zip, path) => {
                let file = zip.finish().map_err(|e| io_error(&path, e))?.into_inner();
                file.sync_all().map_err(|e| io_error(&path, e))?;
                (path, pb::CarryOutFormat::ZipAes256)
            }
        };
        let sha256 = file_sha256(&path)?;
        Ok(Some(CarriedOut {
            path,
            format,
            sha256,
        }))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(buf),
            Sink::Plain(out, _) => out.write(buf),
            Sink::Zip(zip, _) => zip.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::Plain(out, _) => out.flush(),
            // The ZIP is flushed as a whole when it is finished.
            Sink::Zip(..) => Ok(()),
        }
    }
}

/// Now, as a ZIP entry's date: ZIP dates carry no zone and are read as local time, and the
/// people who open the file are in Japan (without it the entry says 1980-01-01).
fn now_in_japan() -> zip::DateTime {
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let now = time::OffsetDateTime::now_utc().to_offset(jst);
    zip::DateTime::from_date_and_time(
        u16::try_from(now.year()).unwrap_or(1980),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
    )
    .unwrap_or_default()
}

/// Lowercase hex SHA-256 of a file.
pub fn file_sha256(path: &Path) -> Result<String, ClientError> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(|e| io_error(path, e))?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
    }
    Ok(hex::encode(context.finish()))
}
