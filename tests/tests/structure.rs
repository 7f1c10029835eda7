//! The code's structure as CI holds it: no two files of a crate import each other, directly or
//! round a loop. Imports are read from the sources — `use` paths and inline `crate::` paths,
//! `super::`, `self::` and child modules resolved to the file that defines the module — and a
//! loop of files is a failure naming them, unless it is the one known below, with its reason.
//! A module naming its own submodules (declaring or re-exporting them) is structure, not a
//! dependency; the submodules' use of their parent counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Loops left on purpose, as sets of files relative to the workspace, with why.
const KNOWN_LOOPS: [(&[&str], &str); 1] = [(
    &[
        "vault-daemon/src/store/approvals.rs",
        "vault-daemon/src/store/corrections.rs",
        "vault-daemon/src/store/mutation.rs",
    ],
    "approving a change request applies the mutation it holds, which is itself a mutation",
)];

const CRATES: [&str; 7] = [
    "vault-daemon",
    "vault-audit",
    "vault-client",
    "vault-console",
    "vault-host",
    "hsm-sim",
    "proto",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file under `src` (`service/records.rs` → [service, records];
/// `service/mod.rs` → [service]; `lib.rs`/`main.rs` → []).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` that is a module of the crate.
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| {
        let stem: PathBuf = path[..n].iter().collect();
        [
            src.join(&stem).with_extension("rs"),
            src.join(&stem).join("mod.rs"),
        ]
        .into_iter()
        .find(|candidate| candidate.is_file())
    })
}

/// The code of a file without its comments and without its test module (by convention the
/// last item, whose `use super::*` would read as an import of the parent).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths `code` names, resolved against `module` (a file's own module path).
fn named_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let children: BTreeSet<String> = code
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("pub ").unwrap_or(line);
            let rest = rest.strip_prefix("mod ")?;
            Some(rest.trim_end_matches(';').trim().to_owned())
        })
        .collect();
    let mut out = Vec::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.contains("::"))
        .collect();
    for word in words {
        let segments: Vec<&str> = word.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segments.first() else {
            continue;
        };
        let mut base: Vec<String> = match *first {
            "crate" => Vec::new(),
            "self" => module.to_vec(),
            "super" => module[..module.len().saturating_sub(1)].to_vec(),
            child if children.contains(child) => {
                let mut base = module.to_vec();
                base.push(child.to_owned());
                out.push(base.clone());
                continue;
            }
            _ => continue,
        };
        let mut rest = &segments[1..];
        while rest.first() == Some(&"super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().map(|s| (*s).to_owned()));
        out.push(base);
    }
    out
}

/// The loops (strongly connected components of more than one file) of `graph`.
fn loops(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<BTreeSet<PathBuf>> {
    let reaches = |from: &PathBuf| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(at) = todo.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&PathBuf, BTreeSet<PathBuf>> =
        graph.keys().map(|file| (file, reaches(file))).collect();
    let mut found: Vec<BTreeSet<PathBuf>> = Vec::new();
    for (file, reachable) in &reach {
        if !reachable.contains(*file) {
            continue;
        }
        let component: BTreeSet<PathBuf> = reachable
            .iter()
            .filter(|other| reach.get(other).is_some_and(|r| r.contains(*file)))
            .cloned()
            .collect();
        if component.len() > 1 && !found.contains(&component) {
            found.push(component);
        }
    }
    found
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let root = workspace();
    let mut unexpected = Vec::new();
    let mut files_read = 0;
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for file in &files {
            files_read += 1;
            let code = code_of(&std::fs::read_to_string(file).expect("source"));
            let module = module_of(&src, file);
            let targets = graph.entry(file.clone()).or_default();
            for path in named_paths(&code, &module) {
                // A module naming its own submodules (declaring, re-exporting them) is its
                // structure, not a dependency: only the submodules' use of it counts.
                if let Some(target) = file_of(&src, &path)
                    && &target != file
                    && !module_of(&src, &target).starts_with(&module)
                {
                    targets.insert(target);
                }
            }
        }
        for component in loops(&graph) {
            let names: BTreeSet<String> = component
                .iter()
                .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
                .collect();
            let known = KNOWN_LOOPS.iter().any(|(files, _)| {
                files
                    .iter()
                    .map(|f| (*f).to_owned())
                    .collect::<BTreeSet<_>>()
                    == names
            });
            if !known {
                unexpected.push(names);
            }
        }
    }
    assert!(files_read > 100, "{files_read} files read");
    assert!(
        unexpected.is_empty(),
        "files that import each other (move what they share into a module both can use): {unexpected:#?}"
    );
}

#[test]
fn the_check_finds_a_loop_it_is_shown() {
    // Two modules naming each other, as the check reads them.
    let a = named_paths("use crate::b::Thing;", &["a".to_owned()]);
    let b = named_paths("use super::a::Other;", &["b".to_owned()]);
    assert_eq!(a, vec![vec!["b".to_owned(), "Thing".to_owned()]]);
    assert_eq!(b, vec![vec!["a".to_owned(), "Other".to_owned()]]);
    let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> =
        [("a.rs", "b.rs"), ("b.rs", "a.rs"), ("c.rs", "a.rs")]
            .into_iter()
            .map(|(from, to)| (PathBuf::from(from), BTreeSet::from([PathBuf::from(to)])))
            .collect();
    let found = loops(&graph);
    assert_eq!(
        found,
        vec![BTreeSet::from([
            PathBuf::from("a.rs"),
            PathBuf::from("b.rs")
        ])]
    );
}

/// The crates `cargo tree` lists for the daemon built with only `features` (normal and build
/// dependencies: what gets linked).
fn linked_crates(features: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--locked",
            "-p",
            "vault-daemon",
            "--no-default-features",
            "--features",
            features,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree --features {features}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_build_links_only_the_key_backends_it_names() {
    // The library each backend feature brings in (tss-esapi links libtss2).
    let libraries = [
        ("sim", "hsm-sim"),
        ("pkcs11", "cryptoki"),
        ("tpm", "tss-esapi"),
    ];
    for (feature, _) in libraries {
        let linked = linked_crates(feature);
        for (other, library) in libraries {
            assert_eq!(
                linked.contains(library),
                other == feature,
                "vault-daemon with only `{feature}`: {library} linked = {}",
                linked.contains(library)
            );
        }
    }
    let all = linked_crates("sim,pkcs11,tpm");
    assert!(libraries.iter().all(|(_, library)| all.contains(*library)));
}
