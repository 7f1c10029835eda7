//! Runs the shell blocks of a Markdown guide as a reader would, one after another in one
//! shell session, so a guide cannot drift from the code: every command must exit 0, or the
//! code its comment promises (`# HELD (exit 9)`), and a command whose comment shows a single
//! word after an arrow (`# → 123456789018`) must print it.
//!
//! A block that must not run says so, with the reason, in an HTML comment on the line before
//! its fence: `<!-- doc-test: skip (why) -->`. Comment lines inside a block are not run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The marker before a fence that keeps its block out of the run.
pub const SKIP_MARKER: &str = "<!-- doc-test: skip";

/// One command of a block, as the reader would type it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocCommand {
    /// Line of the guide where the command starts (1-based).
    pub line: usize,
    /// The command, continuation lines joined, its trailing comment removed.
    pub text: String,
    /// The exit status it must end with.
    pub expected_exit: i32,
    /// A word its standard output must contain.
    pub expected_output: Option<String>,
    /// Started in the background (`&`): not waited for.
    pub background: bool,
}

/// The commands of every `sh` block not marked as skipped, in order.
pub fn commands(markdown: &str) -> Vec<DocCommand> {
    commands_from(markdown, 0)
}

/// The commands of the `sh` blocks under `heading` (a whole heading line, `### Start`) up to
/// the next heading of the same or a higher level, with the lines of the whole guide.
pub fn commands_under(markdown: &str, heading: &str) -> Vec<DocCommand> {
    let (first, section) = section(markdown, heading);
    commands_from(&section, first)
}

/// The first block in `lang` (`toml`, say) under `heading`, as written.
pub fn block_under(markdown: &str, heading: &str, lang: &str) -> String {
    let (_, section) = section(markdown, heading);
    let fence = format!("```{lang}");
    let mut lines = section
        .lines()
        .skip_while(|l| l.trim_end() != fence)
        .skip(1);
    let block: Vec<&str> = lines
        .by_ref()
        .take_while(|l| l.trim_end() != "```")
        .collect();
    assert!(!block.is_empty(), "no {lang} block under {heading:?}");
    block.join("\n") + "\n"
}

/// The lines under `heading` (0-based index of its first line, text).
fn section(markdown: &str, heading: &str) -> (usize, String) {
    let lines: Vec<&str> = markdown.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let level = heading.chars().take_while(|c| *c == '#').count();
    // A shell comment in a block (`# note`) is not a heading.
    let mut in_block = false;
    let end = lines[start + 1..]
        .iter()
        .position(|l| {
            if l.starts_with("```") {
                in_block = !in_block;
            }
            let hashes = l.chars().take_while(|c| *c == '#').count();
            !in_block && hashes > 0 && hashes <= level && l[hashes..].starts_with(' ')
        })
        .map_or(lines.len(), |at| start + 1 + at);
    (start, lines[start..end].join("\n"))
}

fn commands_from(markdown: &str, first_line: usize) -> Vec<DocCommand> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut commands = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        if lines[index].trim_end() != "```sh" {
            index += 1;
            continue;
        }
        let skipped = lines[..index]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with(SKIP_MARKER));
        index += 1;
        let mut pending: Option<(usize, String)> = None;
        while index < lines.len() && lines[index].trim_end() != "```" {
            let line = lines[index];
            index += 1;
            if skipped {
                continue;
            }
            let (start, mut text) = match pending.take() {
                Some((start, text)) => (start, text),
                None => {
                    if line.trim().is_empty() || line.trim_start().starts_with('#') {
                        continue;
                    }
                    (first_line + index, String::new())
                }
            };
            match line.strip_suffix('\\') {
                Some(head) => {
                    text.push_str(head);
                    pending = Some((start, text));
                }
                None => {
                    text.push_str(line);
                    commands.push(parse_command(start, &text));
                }
            }
        }
        index += 1;
    }
    commands
}

fn parse_command(line: usize, joined: &str) -> DocCommand {
    let (command, comment) = split_comment(joined);
    let command = command.trim();
    let expected_exit = comment
        .and_then(|c| c.split("(exit ").nth(1))
        .and_then(|rest| rest.split(')').next())
        .and_then(|code| code.trim().parse().ok())
        .unwrap_or(0);
    let expected_output = comment
        .and_then(|c| c.trim().strip_prefix("→ "))
        .map(str::trim)
        .filter(|word| !word.is_empty() && !word.contains(char::is_whitespace))
        .map(str::to_owned);
    let background = command.ends_with('&') && !command.ends_with("&&");
    DocCommand {
        line,
        text: command.trim_end_matches('&').trim().to_owned(),
        expected_exit,
        expected_output,
        background,
    }
}

/// Splits a command from its trailing comment: a `#` after whitespace, outside quotes.
fn split_comment(text: &str) -> (&str, Option<&str>) {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (Some(open), _) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => return (&text[..at], Some(&text[at + 1..])),
            _ => {}
        }
        previous = c;
    }
    (text, None)
}

/// Quotes `text` for the shell, in single quotes.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A bash script that runs `commands` in order and stops at the first that does not do what
/// the guide says, naming `file` and its line on standard error.
pub fn script(commands: &[DocCommand], file: &str) -> String {
    let mut script = String::from(
        "set -o pipefail\n\
         # Whatever the guide started in the background stops with the run.\n\
         trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n\
         __fail() { printf '%s\\n' \"$1\" >&2; exit 100; }\n",
    );
    for command in commands {
        let place = format!("{file}:{}", command.line);
        script.push_str(&format!(
            "printf '%s\\n' {} >&2\n",
            quoted(&format!("+ {place}: {}", command.text))
        ));
        if command.background {
            script.push_str(&format!("{} &\n", command.text));
            continue;
        }
        match &command.expected_output {
            Some(word) => script.push_str(&format!(
                "__out=$({text}); __rc=$?; printf '%s\\n' \"$__out\"\n\
                 case \"$__out\" in *{word}*) ;; *) __fail {says} ;; esac\n",
                text = command.text,
                word = quoted(word),
                says = quoted(&format!("{place}: the output does not show {word}")),
            )),
            None => script.push_str(&format!("{}\n__rc=$?\n", command.text)),
        }
        script.push_str(&format!(
            "[ \"$__rc\" -eq {expected} ] || __fail \"{place}: exit $__rc, expected {expected}\"\n",
            expected = command.expected_exit,
        ));
    }
    script
}

/// Runs `script` with bash in `dir` with only `env` set, within `deadline`. Ok with the
/// output, or Err with the output and the reason it failed.
pub fn run(
    script: &str,
    dir: &Path,
    env: &[(&str, String)],
    deadline: Duration,
) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a run past its deadline is stopped with everything it
        // started.
        .process_group(0)
        .spawn()
        .expect("bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if started.elapsed() > deadline {
            if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("output");
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match status {
        Some(status) if status.success() => Ok(text),
        Some(status) => Err(format!("{status}\n{text}")),
        None => Err(format!("no end within {deadline:?}\n{text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_ends_at_the_next_heading_of_its_level_not_at_a_shell_comment() {
        let guide = "## A\n### One\n```sh\n# not a heading\necho one\n```\n```toml\nx = 1\n```\n### Two\n```sh\necho two\n```\n";
        let one = commands_under(guide, "### One");
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].line, one[0].text.as_str()), (5, "echo one"));
        assert_eq!(block_under(guide, "### One", "toml"), "x = 1\n");
        assert_eq!(commands_under(guide, "## A").len(), 2);
    }

    #[test]
    fn commands_are_joined_commented_and_skipped_as_marked() {
        let guide = "text\n```sh\n# a comment\nH=$(printf 'a # b' | \\\n  tr a b)   # → bbb\nrun one  # HELD (exit 9): held\ndaemon --dev &\n```\n\n<!-- doc-test: skip (runs forever) -->\n```sh\nserve\n```\n```toml\nx = 1\n```\n";
        let found = commands(guide);
        assert_eq!(
            found,
            [
                DocCommand {
                    line: 4,
                    text: "H=$(printf 'a # b' |   tr a b)".into(),
                    expected_exit: 0,
                    expected_output: Some("bbb".into()),
                    background: false,
                },
                DocCommand {
                    line: 6,
                    text: "run one".into(),
                    expected_exit: 9,
                    expected_output: None,
                    background: false,
                },
                DocCommand {
                    line: 7,
                    text: "daemon --dev".into(),
                    expected_exit: 0,
                    expected_output: None,
                    background: true,
                },
            ]
        );
    }
}
