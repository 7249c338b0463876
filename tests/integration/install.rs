//! What installs beside the binaries: shell completions and manual pages,
//! used as a user would.

use std::process::Command;

use tempfile::TempDir;

use crate::harness::*;

/// The completion script `realize completions SHELL` prints.
fn completions(shell: &str) -> String {
    let out = run(&["completions", shell]);
    assert!(out.status.success(), "{shell}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn bash_completes_the_flags_of_a_move() {
    let script = completions("bash");
    assert!(script.contains("--src-path"), "{script}");
    // What bash offers after `realize --src<TAB>`, the script sourced.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{script}\nCOMP_WORDS=(realize --src); COMP_CWORD=1; \
             _realize realize --src realize; echo \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let offered = stdout(&out);
    for flag in ["--src-path", "--src-addr", "--src-peer"] {
        assert!(offered.split_whitespace().any(|w| w == flag), "{offered}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_the_flags() {
    for shell in ["zsh", "fish"] {
        assert!(completions(shell).contains("src-path"), "{shell}");
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));
}

#[test]
fn man_pages_render_with_their_flags() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("man1");
    let result = run(&["man", "--out", out.to_str().unwrap()]);
    assert!(result.status.success(), "{}", stderr(&result));
    let pages = [
        ("realize.1", "--src-path"),
        ("realize-keygen.1", "--name"),
        ("realized.1", "--config"),
    ];
    for (page, flag) in pages {
        let path = out.join(page);
        assert!(stdout(&result).contains(page), "{}", stdout(&result));
        let roff = std::fs::read_to_string(&path).unwrap();
        assert!(roff.contains(".SH NAME"), "{page}: {roff}");
        assert!(roff.contains(&flag.replace('-', "\\-")), "{page}: {roff}");
        // Rendered as `man` shows it, where man is installed.
        let Ok(shown) = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("LANG", "C")
            .output()
        else {
            continue;
        };
        assert!(shown.status.success(), "man -l {page}: {}", stderr(&shown));
        let text = stdout(&shown);
        assert!(
            text.contains("NAME") && text.contains(flag),
            "{page}: {text}"
        );
    }
}
