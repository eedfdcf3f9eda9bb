use super::*;

fn ig(text: &str) -> Ignore {
    Ignore::parse(text)
}

#[test]
fn read_patterns_normalizes() {
    let text = "\u{feff}# comment\n  \n/foo/bar \n./a/../b\n! /keep/./me\n#not/skipped? no\n*.md\n \t# indented comment is a pattern\n";
    assert_eq!(
        read_patterns(text),
        vec![
            "foo/bar",
            "b",
            "!keep/me",
            "*.md",
            "# indented comment is a pattern"
        ]
    );
}

#[test]
fn docker_documented_examples() {
    // From Docker's .dockerignore documentation.
    let i = ig("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
    assert!(i.matches("somedir/temporary.txt"));
    assert!(i.matches("somedir/temp"));
    assert!(i.matches("somedir/subdir/temporary.txt"));
    assert!(i.matches("tempa"));
    assert!(i.matches("tempb"));
    assert!(!i.matches("temp"));
    assert!(!i.matches("temporary.txt"));
    assert!(!i.matches("a/b/c/temp"));

    let i = ig("*.md\n!README.md\n");
    assert!(i.matches("CHANGELOG.md"));
    assert!(!i.matches("README.md"));

    let i = ig("*.md\n!README*.md\nREADME-secret.md\n");
    assert!(i.matches("CHANGELOG.md"));
    assert!(!i.matches("README-public.md"));
    assert!(i.matches("README-secret.md"));

    let i = ig("*.md\nREADME-secret.md\n!README*.md\n");
    assert!(!i.matches("README-secret.md"));
    assert!(!i.matches("README.md"));

    let i = ig("**/*.go\n");
    assert!(i.matches("main.go"));
    assert!(i.matches("a/b/c.go"));
    assert!(!i.matches("a/b/c.gox"));
}

#[test]
fn parent_directory_excludes_contents() {
    let i = ig("build\nnode_modules/\n");
    assert!(i.matches("build"));
    assert!(i.matches("build/out/x.o"));
    assert!(i.matches("node_modules/a/index.js"));
    assert!(!i.matches("src/build.rs"));
    assert!(!i.matches("builder"));
}

#[test]
fn exceptions_and_last_match_wins() {
    let i = ig("docs\n!docs/keep.md\n");
    assert!(i.matches("docs/other.md"));
    assert!(!i.matches("docs/keep.md"));
    assert!(i.must_descend("docs"));
    let j = ig("docs\n");
    assert!(!j.must_descend("docs"));
    let k = ig("!docs/keep.md\ndocs\n");
    assert!(k.matches("docs/keep.md"));
}

#[test]
fn double_star_forms() {
    let i = ig("**\n!src\n");
    assert!(i.matches("anything"));
    assert!(!i.matches("src"));
    let i = ig("a/**\n");
    assert!(i.matches("a/b"));
    assert!(i.matches("a/b/c"));
    let i = ig("a/**/z\n");
    assert!(i.matches("a/z"));
    assert!(i.matches("a/b/c/z"));
    assert!(!i.matches("b/z"));
    let i = ig("**/tmp\n");
    assert!(i.matches("tmp"));
    assert!(i.matches("x/y/tmp"));
    assert!(i.matches("x/tmp/file"));
    let i = ig("a/**/*.log\n");
    assert!(i.matches("a/x.log"));
    assert!(i.matches("a/b/x.log"));
    assert!(!i.matches("b/x.log"));
}

#[test]
fn classes_question_and_escapes() {
    let i = ig("file[0-9].txt\nx[^ab]\nq?\nlit\\*\n");
    assert!(i.matches("file3.txt"));
    assert!(!i.matches("filex.txt"));
    assert!(i.matches("xc"));
    assert!(!i.matches("xa"));
    assert!(i.matches("q1"));
    assert!(!i.matches("q/"));
    assert!(i.matches("lit*"));
    assert!(!i.matches("litx"));
    let i = ig("*\n");
    assert!(i.matches("a"));
    assert!(i.matches("a/b"));
}

#[test]
fn clean_path_like_go() {
    assert_eq!(clean_path("./a/./b/"), "a/b");
    assert_eq!(clean_path("a/../../b"), "../b");
    assert_eq!(clean_path("/../a"), "/a");
    assert_eq!(clean_path(""), ".");
    assert_eq!(clean_path("a/.."), ".");
}

#[test]
fn go_filepath_match() {
    assert!(glob_match("*.txt", "a.txt"));
    assert!(!glob_match("*.txt", "d/a.txt"));
    assert!(glob_match("d/?.txt", "d/a.txt"));
    assert!(glob_match("[abc]x", "bx"));
    assert!(glob_match("[^abc]x", "dx"));
    assert!(glob_match("\\*", "*"));
    assert!(!glob_match("\\*", "a"));
}
