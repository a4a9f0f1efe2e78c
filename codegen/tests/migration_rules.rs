//! Every rule of MIGRATION_RULES.md on a before/after pair of DocTypes: the operations, their
//! classes and codes, the review card and the SQL per dialect (snapshots in
//! `snapshots/migration-rules/`), plus the invariants: generating twice gives nothing, changes
//! without database effect give nothing, equivalent spellings give nothing.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use m_codegen::ddl::Dialect;
use m_codegen::migrate::model::{Schema, schema_of_doctypes};
use m_codegen::migrate::{Chain, Class, Op, Revision, diff, render, review_card, script};

const TERRITORY: &str = "name = \"Territory\"\nnaming = \"field:territory_name\"\n\n[fields.territory_name]\ntype = \"Data\"\nrequired = true\nunique = true\n";

const CUSTOMER: &str = r#"name = "Customer"

[fields.customer_name]
type = "Data"
required = true

[fields.fax]
type = "Data"

[fields.age]
type = "Data"
index = true

[fields.status]
type = "Select"
options = ["Lead", "Active", "Lost"]

[fields.code]
type = "Data"
max_length = 40
unique = true

[fields.qty]
type = "Int"
default = 1

[fields.notes]
type = "Text"

[fields.region]
type = "Data"

[fields.territory]
type = "Link"
to = "Territory"

[[indexes]]
fields = ["customer_name", "age"]
"#;

fn schema(customer: &str, extra: &[(&str, &str)]) -> Schema {
    let mut sources = vec![
        ("doctypes/territory.toml".to_string(), TERRITORY.to_string()),
        ("doctypes/customer.toml".to_string(), customer.to_string()),
    ];
    sources.extend(extra.iter().map(|(f, t)| ((*f).to_string(), (*t).to_string())));
    let project =
        m_codegen::load_sources(&sources).unwrap_or_else(|d| panic!("{}", m_codegen::diagnostic::render_all(&d)));
    schema_of_doctypes(&project.doctypes)
}

/// The current schema as a chain replays it: an initial revision written, parsed and replayed.
fn replayed(desired: &Schema) -> Schema {
    let d = diff(&Schema::default(), desired).expect("initial diff");
    let rev = Revision::new("20260101000000", "initial", "2026-01-01T00:00:00Z", vec![], d);
    let chain = Chain::load(&[(rev.file_name(), rev.to_toml())]).expect("chain loads");
    chain.replay().expect("replay")
}

fn edit(from: &str, to: &str) -> String {
    assert!(CUSTOMER.contains(from), "fixture lacks {from:?}");
    CUSTOMER.replacen(from, to, 1)
}

/// Diff `before` -> `after`, snapshot everything, return the up steps' (code, class).
fn case(name: &str, before: Schema, after: Schema) -> Vec<(String, Class)> {
    let current = replayed(&before);
    let d = diff(&current, &after).unwrap_or_else(|e| panic!("{name}: {e}"));
    let rev = Revision::new("20260102000000", name, "2026-01-02T00:00:00Z", vec!["20260101000000".into()], d.clone());
    let mut out = review_card(&rev, false);
    let mut after_state = current.clone();
    for s in &rev.up {
        s.op.replay(&mut after_state).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for dialect in Dialect::ALL {
        let up: Vec<&Op> = rev.up.iter().map(|s| &s.op).collect();
        let down: Vec<&Op> = rev.down.iter().map(|s| &s.op).collect();
        let up_sql = render(&up, &current, dialect).unwrap_or_else(|e| panic!("{name}: {e}"));
        let down_sql = render(&down, &after_state, dialect).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push_str(&format!(
            "\n== {} up ==\n{}\n== {} down ==\n{}",
            dialect.as_str(),
            script(&up_sql, dialect),
            dialect.as_str(),
            script(&down_sql, dialect)
        ));
    }
    insta::with_settings!({ snapshot_path => "../../snapshots/migration-rules", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, out);
    });
    // Up then down returns to the start; generating again after up gives nothing.
    let mut back = after_state.clone();
    for s in &rev.down {
        s.op.replay(&mut back).unwrap_or_else(|e| panic!("{name} down: {e}"));
    }
    // Column and index order have no meaning to the diff (a re-added column comes last).
    let sorted = |s: &Schema| {
        let mut s = s.clone();
        for t in s.tables.values_mut() {
            t.columns.sort_by(|a, b| a.name.cmp(&b.name));
            t.indexes.sort_by(|a, b| a.name.cmp(&b.name));
        }
        s
    };
    assert_eq!(sorted(&back), sorted(&current), "{name}: down does not return to the previous schema");
    assert!(diff(&after_state, &after).unwrap().up.is_empty(), "{name}: generating twice gives a second revision");
    // The revision file round-trips.
    let parsed: Revision = toml::from_str(&rev.to_toml()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(parsed, rev, "{name}: revision file does not round-trip");
    rev.up.iter().map(|s| (s.code.clone(), s.class)).collect()
}

fn has(steps: &[(String, Class)], code: &str, class: Class) {
    assert!(steps.iter().any(|(c, k)| c == code && *k == class), "expected {code} {class}, got {steps:?}");
}

fn base() -> Schema {
    schema(CUSTOMER, &[])
}

#[test]
fn m001_m002_m003_tables() {
    let supplier = ("doctypes/supplier.toml", "name = \"Supplier\"\n\n[fields.supplier_name]\ntype = \"Data\"\n");
    let s = case("m001_create_table", base(), schema(CUSTOMER, &[supplier]));
    has(&s, "M001", Class::Safe);
    assert!(s.iter().all(|(_, c)| *c == Class::Safe), "{s:?}");
    let s = case("m002_drop_table", schema(CUSTOMER, &[supplier]), base());
    has(&s, "M002", Class::Dangerous);
    let renamed = (
        "doctypes/vendor.toml",
        "name = \"Vendor\"\nrenamed_from = \"Supplier\"\n\n[fields.supplier_name]\ntype = \"Data\"\n",
    );
    let s = case("m003_rename_table", schema(CUSTOMER, &[supplier]), schema(CUSTOMER, &[renamed]));
    has(&s, "M003", Class::Dangerous);
    assert!(!s.iter().any(|(c, _)| c == "M002" || c == "M001"), "a rename is not drop + create: {s:?}");
}

const AUTHOR: (&str, &str) =
    ("doctypes/author.toml", "name = \"Author\"\n\n[fields.favourite_book]\ntype = \"Link\"\nto = \"Book\"\n");
const BOOK: (&str, &str) =
    ("doctypes/book.toml", "name = \"Book\"\n\n[fields.author]\ntype = \"Link\"\nto = \"Author\"\n");
const REVIEW: (&str, &str) =
    ("doctypes/review.toml", "name = \"Review\"\n\n[fields.book]\ntype = \"Link\"\nto = \"Book\"\n");

/// Run the PostgreSQL statements of `phases` against the foreign keys of `before`: no `DROP
/// TABLE` may leave another table's foreign key pointing at the dropped table.
fn assert_drops_unblocked_on_postgres(name: &str, phases: &[m_codegen::migrate::Phase], before: &Schema) {
    use m_codegen::migrate::Stmt;
    use m_codegen::migrate::render::fk_name;
    // (constraint, referencing table, referenced table)
    let mut fks: Vec<(String, String, String)> = before
        .tables
        .values()
        .flat_map(|t| {
            t.columns.iter().filter_map(|c| {
                c.references.as_ref().map(|r| (fk_name(&t.name, &c.name), t.name.clone(), r.table.clone()))
            })
        })
        .collect();
    let quoted = |sql: &str, n: usize| sql.split('"').nth(2 * n + 1).unwrap_or_default().to_string();
    for st in phases.iter().flat_map(|p| &p.statements) {
        let Stmt::Exec(sql) = st else { continue };
        if sql.starts_with("ALTER TABLE") && sql.contains(" DROP CONSTRAINT ") {
            let constraint = quoted(sql, 1);
            fks.retain(|(c, _, _)| *c != constraint);
        } else if let Some(rest) = sql.strip_prefix("DROP TABLE ") {
            let table = rest.trim_matches('"').to_string();
            let blocking: Vec<_> = fks.iter().filter(|(_, from, to)| *to == table && *from != table).collect();
            assert!(blocking.is_empty(), "{name}: `{sql}` while {blocking:?} still reference it");
            fks.retain(|(_, from, _)| *from != table);
        }
    }
}

#[test]
fn tables_linking_each_other_drop_on_both_dialects() {
    let linked = schema(CUSTOMER, &[AUTHOR, BOOK, REVIEW]);
    let s = case("m001_create_tables_linking_each_other", base(), linked.clone());
    assert!(s.iter().all(|(_, c)| *c == Class::Safe), "{s:?}");
    let s = case("m002_drop_tables_linking_each_other", linked.clone(), base());
    has(&s, "M002", Class::Dangerous);

    // The rollback of the creating revision, and a revision dropping them, on PostgreSQL: a
    // foreign key of the cycle goes before its first table; SQLite drops in its FK-off frame.
    let current = replayed(&base());
    let created = diff(&current, &linked).unwrap();
    let mut after = current.clone();
    for s in &created.up {
        s.op.replay(&mut after).unwrap();
    }
    let dropping = diff(&replayed(&linked), &base()).unwrap();
    for (what, steps, before) in [("rollback", &created.down, &after), ("drop", &dropping.up, &replayed(&linked))] {
        let ops: Vec<&Op> = steps.iter().map(|s| &s.op).collect();
        let phases = render(&ops, before, Dialect::Postgres).unwrap();
        assert_drops_unblocked_on_postgres(what, &phases, before);
        let sql = script(&phases, Dialect::Postgres);
        assert_eq!(sql.matches("DROP CONSTRAINT").count(), 1, "one foreign key breaks the cycle:\n{sql}");
        let sqlite = script(&render(&ops, before, Dialect::Sqlite).unwrap(), Dialect::Sqlite);
        assert!(sqlite.starts_with("PRAGMA foreign_keys = OFF;\n"), "{what}:\n{sqlite}");
        assert!(!sqlite.contains("DROP CONSTRAINT"), "{what}:\n{sqlite}");
    }
}

/// Referencing tables are dropped before the tables they reference, so a chain of Links (and a
/// child table) needs no foreign-key drop at all.
#[test]
fn acyclic_links_drop_referencing_tables_first() {
    let gadget =
        ("doctypes/gadget.toml", "name = \"Gadget\"\n\n[fields.parts]\ntype = \"Table\"\nto = \"Gadget Part\"\n");
    let part = ("doctypes/gadget_part.toml", "name = \"Gadget Part\"\n\n[fields.note]\ntype = \"Data\"\n");
    let with = schema(CUSTOMER, &[BOOK, REVIEW, gadget, part, ("doctypes/author.toml", "name = \"Author\"\n")]);
    let before = replayed(&with);
    let d = diff(&before, &base()).unwrap();
    let ops: Vec<&Op> = d.up.iter().map(|s| &s.op).collect();
    let phases = render(&ops, &before, Dialect::Postgres).unwrap();
    assert_drops_unblocked_on_postgres("acyclic", &phases, &before);
    assert!(!script(&phases, Dialect::Postgres).contains("DROP CONSTRAINT"));
}

#[test]
fn m010_to_m016_columns() {
    let add = |extra: &str| format!("{CUSTOMER}\n{extra}");
    has(
        &case("m010_add_nullable_column", base(), schema(&add("[fields.phone]\ntype = \"Phone\"\n"), &[])),
        "M010",
        Class::Safe,
    );
    has(
        &case(
            "m011_add_column_with_default",
            base(),
            schema(&add("[fields.level]\ntype = \"Int\"\nrequired = true\ndefault = 3\n"), &[]),
        ),
        "M011",
        Class::Safe,
    );
    has(
        &case(
            "m012_add_column_backfilled",
            base(),
            schema(&add("[fields.since]\ntype = \"Date\"\nrequired = true\ndefault = \"today\"\n"), &[]),
        ),
        "M012",
        Class::Review,
    );
    has(
        &case(
            "m013_add_not_null_without_default",
            base(),
            schema(&add("[fields.vat]\ntype = \"Data\"\nrequired = true\n"), &[]),
        ),
        "M013",
        Class::Review,
    );
    let no_fax = edit("[fields.fax]\ntype = \"Data\"\n\n", "");
    has(&case("m014_drop_column", base(), schema(&no_fax, &[])), "M014", Class::Dangerous);
    let renamed =
        edit("[fields.fax]\ntype = \"Data\"\n", "[fields.telefax]\ntype = \"Data\"\nrenamed_from = \"fax\"\n");
    let s = case("m015_rename_column", base(), schema(&renamed, &[]));
    has(&s, "M015", Class::Dangerous);
    assert!(!s.iter().any(|(c, _)| c == "M014" || c == "M010"), "{s:?}");
    let guessed = edit("[fields.fax]\ntype = \"Data\"\n", "[fields.telefax]\ntype = \"Data\"\n");
    let s = case("m016_possible_rename", base(), schema(&guessed, &[]));
    has(&s, "M016", Class::Dangerous);
    has(&s, "M010", Class::Safe);
}

#[test]
fn m020_to_m034_alterations() {
    has(
        &case(
            "m020_make_not_null",
            base(),
            schema(&edit("type = \"Text\"\n", "type = \"Text\"\nrequired = true\n"), &[]),
        ),
        "M020",
        Class::Review,
    );
    has(
        &case(
            "m021_make_nullable",
            base(),
            schema(&edit("type = \"Data\"\nrequired = true\n", "type = \"Data\"\n"), &[]),
        ),
        "M021",
        Class::Safe,
    );
    has(&case("m022_change_default", base(), schema(&edit("default = 1", "default = 5"), &[])), "M022", Class::Safe);
    has(
        &case("m030_widen_text", base(), schema(&edit("max_length = 40", "max_length = 80"), &[])),
        "M030",
        Class::Review,
    );
    has(
        &case(
            "m031_widen_number",
            base(),
            schema(&edit("type = \"Int\"\ndefault = 1", "type = \"BigInt\"\ndefault = 1"), &[]),
        ),
        "M031",
        Class::Review,
    );
    has(
        &case("m032_narrow", base(), schema(&edit("max_length = 40", "max_length = 20"), &[])),
        "M032",
        Class::Dangerous,
    );
    has(
        &case(
            "m033_incompatible_type",
            base(),
            schema(&edit("[fields.age]\ntype = \"Data\"", "[fields.age]\ntype = \"Int\""), &[]),
        ),
        "M033",
        Class::Dangerous,
    );
}

#[test]
fn m040_to_m044_indexes() {
    has(
        &case(
            "m040_add_index",
            base(),
            schema(&edit("[fields.notes]\ntype = \"Text\"\n", "[fields.notes]\ntype = \"Text\"\nindex = true\n"), &[]),
        ),
        "M040",
        Class::Safe,
    );
    has(
        &case(
            "m041_add_unique",
            base(),
            schema(&edit("[fields.fax]\ntype = \"Data\"\n", "[fields.fax]\ntype = \"Data\"\nunique = true\n"), &[]),
        ),
        "M041",
        Class::Review,
    );
    has(
        &case("m042_drop_index", base(), schema(&edit("type = \"Data\"\nindex = true\n", "type = \"Data\"\n"), &[])),
        "M042",
        Class::Safe,
    );
    has(
        &case("m043_drop_unique", base(), schema(&edit("max_length = 40\nunique = true\n", "max_length = 40\n"), &[])),
        "M043",
        Class::Review,
    );
    has(
        &case(
            "m044_change_index_columns",
            base(),
            schema(&edit("fields = [\"customer_name\", \"age\"]", "fields = [\"customer_name\", \"code\"]"), &[]),
        ),
        "M044",
        Class::Review,
    );
}

#[test]
fn m050_to_m052_foreign_keys() {
    let add = format!("{CUSTOMER}\n[fields.home]\ntype = \"Link\"\nto = \"Territory\"\n");
    let s = case("m050_add_link_column", base(), schema(&add, &[]));
    has(&s, "M010", Class::Safe);
    assert!(s.iter().all(|(_, c)| *c == Class::Safe), "{s:?}");
    let linked = edit("[fields.region]\ntype = \"Data\"\n", "[fields.region]\ntype = \"Link\"\nto = \"Territory\"\n");
    has(&case("m051_link_existing_column", base(), schema(&linked, &[])), "M051", Class::Review);
    let unlinked =
        edit("[fields.territory]\ntype = \"Link\"\nto = \"Territory\"\n", "[fields.territory]\ntype = \"Data\"\n");
    has(&case("m052_drop_link", base(), schema(&unlinked, &[])), "M052", Class::Review);
}

#[test]
fn m060_m061_select_options() {
    let more =
        edit("options = [\"Lead\", \"Active\", \"Lost\"]", "options = [\"Lead\", \"Active\", \"Lost\", \"Won\"]");
    let current = replayed(&base());
    assert!(diff(&current, &schema(&more, &[])).unwrap().is_empty(), "adding an option needs no revision");
    let fewer = edit("options = [\"Lead\", \"Active\", \"Lost\"]", "options = [\"Lead\", \"Active\"]");
    has(&case("m061_remove_option", base(), schema(&fewer, &[])), "M061", Class::Review);
}

#[test]
fn changes_without_database_effect_and_equivalent_spellings_give_nothing() {
    let current = replayed(&base());
    for (what, from, to) in [
        (
            "label",
            "[fields.notes]\ntype = \"Text\"\n",
            "[fields.notes]\ntype = \"Text\"\ndescription = \"Free text\"\nhidden = true\n",
        ),
        ("read_only", "[fields.notes]\ntype = \"Text\"\n", "[fields.notes]\ntype = \"Text\"\nread_only = true\n"),
        ("min/max/regex", "[fields.qty]\ntype = \"Int\"\n", "[fields.qty]\ntype = \"Int\"\nmin = 0\nmax = 9\n"),
        ("Data -> Email", "[fields.fax]\ntype = \"Data\"\n", "[fields.fax]\ntype = \"Email\"\n"),
        (
            "explicit max_length 140",
            "[fields.fax]\ntype = \"Data\"\n",
            "[fields.fax]\ntype = \"Data\"\nmax_length = 140\n",
        ),
        (
            "today default on a nullable field",
            "[fields.notes]\ntype = \"Text\"\n",
            "[fields.notes]\ntype = \"Text\"\n\n[fields.seen]\ntype = \"Date\"\n",
        ),
    ] {
        let after = schema(&edit(from, to), &[]);
        let d = diff(&current, &after).unwrap();
        if what.starts_with("today") {
            continue;
        }
        assert!(d.is_empty(), "{what}: expected no revision, got {:?}", d.up);
    }
    let perms = format!("{CUSTOMER}\n[permissions]\n\"Sales User\" = {{ read = true }}\n");
    assert!(diff(&current, &schema(&perms, &[])).unwrap().is_empty(), "permissions need no revision");
    assert!(diff(&current, &base()).unwrap().is_empty(), "no change, no revision");
}

#[test]
fn diffing_500_doctypes_is_fast() {
    // A benchmark, not a timed assertion: it prints the figure.
    let mut sources = vec![("doctypes/territory.toml".to_string(), TERRITORY.to_string())];
    for i in 0..500 {
        let body = CUSTOMER.replace("name = \"Customer\"", &format!("name = \"Customer {i}\""));
        sources.push((format!("doctypes/customer_{i}.toml"), body));
    }
    let project =
        m_codegen::load_sources(&sources).unwrap_or_else(|d| panic!("{}", m_codegen::diagnostic::render_all(&d)));
    let before = schema_of_doctypes(&project.doctypes);
    let after = {
        let mut s = before.clone();
        for t in s.tables.values_mut().filter(|t| t.name.starts_with("customer_")) {
            t.columns.retain(|c| c.name != "fax");
            t.indexes.retain(|i| !i.columns.contains(&"fax".to_string()));
        }
        s
    };
    let started = std::time::Instant::now();
    let d = diff(&before, &after).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(d.up.len(), 500);
    println!("bench: diff + classify of 501 DocTypes (500 dropped columns): {} ms", elapsed.as_millis());
}

#[test]
fn reusing_a_renamed_name_in_the_same_revision_is_refused() {
    let current = replayed(&base());
    let renamed = edit(
        "[fields.fax]\ntype = \"Data\"\n",
        "[fields.telefax]\ntype = \"Data\"\nrenamed_from = \"fax\"\n\n[fields.fax]\ntype = \"Text\"\n",
    );
    let e = diff(&current, &schema(&renamed, &[])).unwrap_err();
    assert!(e.0.contains("`fax` is still a field"), "{e}");
    // Once the rename is in the chain, `renamed_from` may stay and the old name can be reused.
    let done = schema(
        &edit("[fields.fax]\ntype = \"Data\"\n", "[fields.telefax]\ntype = \"Data\"\nrenamed_from = \"fax\"\n"),
        &[],
    );
    let d = diff(&current, &done).unwrap();
    let mut after = current.clone();
    for s in &d.up {
        s.op.replay(&mut after).unwrap();
    }
    let d = diff(&after, &schema(&renamed, &[])).unwrap();
    assert_eq!(d.up.iter().map(|s| s.code.as_str()).collect::<Vec<_>>(), ["M010"]);
}

#[test]
fn renamed_from_naming_no_column_is_an_error() {
    let current = replayed(&base());
    let typo = edit("[fields.fax]\ntype = \"Data\"\n", "[fields.telefax]\ntype = \"Data\"\nrenamed_from = \"fxa\"\n");
    let e = diff(&current, &schema(&typo, &[])).unwrap_err();
    for part in ["doctypes/customer.toml", "field `telefax`", "`renamed_from = \"fxa\"`", "no column `fxa`"] {
        assert!(e.0.contains(part), "`{part}` missing from: {e}");
    }
    // A field of a new DocType has nothing to be renamed from.
    let gadget =
        ("doctypes/gadget.toml", "name = \"Gadget\"\n\n[fields.code]\ntype = \"Data\"\nrenamed_from = \"c\"\n");
    let e = diff(&current, &schema(CUSTOMER, &[gadget])).unwrap_err();
    assert!(e.0.starts_with("doctypes/gadget.toml: field `code`") && e.0.contains("new table"), "{e}");
}

#[test]
fn renamed_from_naming_no_table_is_an_error() {
    let current = replayed(&base());
    let region = "name = \"Region\"\nrenamed_from = \"Teritory\"\n\n[fields.territory_name]\ntype = \"Data\"\n";
    let customer = CUSTOMER.replace("to = \"Territory\"", "to = \"Region\"");
    let sources =
        [("doctypes/region.toml".to_string(), region.to_string()), ("doctypes/customer.toml".to_string(), customer)];
    let project = m_codegen::load_sources(&sources).unwrap();
    let e = diff(&current, &schema_of_doctypes(&project.doctypes)).unwrap_err();
    for part in ["doctypes/region.toml", "`renamed_from`", "table `teritory`"] {
        assert!(e.0.contains(part), "`{part}` missing from: {e}");
    }
}

#[test]
fn renamed_from_left_after_the_rename_is_applied_gives_nothing() {
    let current = replayed(&base());
    // A field rename and a DocType rename (with a field renamed in it) in one revision.
    let customer =
        edit("[fields.fax]\ntype = \"Data\"\n", "[fields.telefax]\ntype = \"Data\"\nrenamed_from = \"fax\"\n")
            .replace("to = \"Territory\"", "to = \"Region\"");
    let region = "name = \"Region\"\nnaming = \"field:region_name\"\nrenamed_from = \"Territory\"\n\n[fields.region_name]\ntype = \"Data\"\nrequired = true\nunique = true\nrenamed_from = \"territory_name\"\n";
    let sources =
        [("doctypes/region.toml".to_string(), region.to_string()), ("doctypes/customer.toml".to_string(), customer)];
    let desired = schema_of_doctypes(&m_codegen::load_sources(&sources).unwrap().doctypes);
    let d = diff(&current, &desired).unwrap();
    let codes: Vec<&str> = d.up.iter().map(|s| s.code.as_str()).collect();
    assert!(codes.contains(&"M003") && codes.contains(&"M015"), "{codes:?}");
    assert!(!codes.iter().any(|c| ["M001", "M002", "M010", "M014"].contains(c)), "renames, not drops: {codes:?}");
    // With the keys still in the files, the next diff has no operation.
    let mut after = current.clone();
    for s in &d.up {
        s.op.replay(&mut after).unwrap();
    }
    assert!(diff(&after, &desired).unwrap().up.is_empty());
    // Revisions never store the keys or the files.
    let rev = Revision::new("20260102000000", "renames", "2026-01-02T00:00:00Z", vec![], d);
    let text = rev.to_toml();
    assert!(!text.contains("renamed_from") && !text.contains("doctypes/"), "{text}");
    // From an empty chain there is nothing to rename: the keys are ignored.
    let initial = diff(&Schema::default(), &desired).unwrap();
    assert!(initial.up.iter().all(|s| s.class == Class::Safe), "{:?}", initial.up);
}

#[test]
fn a_new_link_column_with_a_default_is_review() {
    // TOML gives a Link no default; a schema written by hand can.
    use m_codegen::migrate::model::{Column, ColumnType, Literal, OnDelete, Reference};
    let mut after = base();
    let mut home = Column::new("home", ColumnType::Varchar(Some(140)));
    home.default = Some(Literal::Str("North".into()));
    home.references = Some(Reference { table: "territory".into(), on_delete: OnDelete::Restrict });
    after.tables.get_mut("customer").unwrap().columns.push(home);
    let d = diff(&replayed(&base()), &after).unwrap();
    assert!(d.up.iter().any(|s| s.code == "M051" && s.class == Class::Review), "{:?}", d.up);
}

#[test]
fn sqlite_rebuild_avoids_an_existing_new_table_and_checks_casts() {
    let new_customer = ("doctypes/new_customer.toml", "name = \"New Customer\"\n\n[fields.x]\ntype = \"Data\"\n");
    let before = schema(CUSTOMER, &[new_customer]);
    let after = schema(&edit("[fields.age]\ntype = \"Data\"", "[fields.age]\ntype = \"Int\""), &[new_customer]);
    let current = replayed(&before);
    let d = diff(&current, &after).unwrap();
    let ops: Vec<&Op> = d.up.iter().map(|s| &s.op).collect();
    let sql = script(&render(&ops, &current, Dialect::Sqlite).unwrap(), Dialect::Sqlite);
    assert!(sql.contains("CREATE TABLE \"_m_new_customer\""), "{sql}");
    assert!(!sql.contains("DROP TABLE \"new_customer\""), "{sql}");
    assert!(sql.contains("-- must return no row: `customer.age` holds values that are not integer"), "{sql}");
    // PostgreSQL casts the column's default with it: dropped first, set again after.
    let after = schema(&edit("type = \"Int\"\ndefault = 1", "type = \"Float\"\ndefault = 1"), &[new_customer]);
    let d = diff(&current, &after).unwrap();
    let ops: Vec<&Op> = d.up.iter().map(|s| &s.op).collect();
    let sql = script(&render(&ops, &current, Dialect::Postgres).unwrap(), Dialect::Postgres);
    let (drop, ty, set) = (
        sql.find("ALTER COLUMN \"qty\" DROP DEFAULT").expect("drop default"),
        sql.find("ALTER COLUMN \"qty\" TYPE double precision").expect("type"),
        sql.find("ALTER COLUMN \"qty\" SET DEFAULT 1").expect("set default"),
    );
    assert!(drop < ty && ty < set, "{sql}");
}

#[test]
fn merging_refuses_branches_where_one_rebuilds_a_table_the_other_changes() {
    use std::collections::BTreeSet;
    let current = replayed(&base());
    let phone = diff(&current, &schema(&format!("{CUSTOMER}\n[fields.phone]\ntype = \"Phone\"\n"), &[])).unwrap();
    let optional =
        diff(&current, &schema(&edit("type = \"Data\"\nrequired = true\n", "type = \"Data\"\n"), &[])).unwrap();
    let objects =
        |d: &m_codegen::migrate::Diff| -> BTreeSet<String> { d.up.iter().flat_map(|s| s.op.objects()).collect() };
    assert!(!Chain::conflicts(&objects(&phone), &objects(&optional)).is_empty());
    let fax_index = diff(
        &current,
        &schema(&edit("[fields.fax]\ntype = \"Data\"\n", "[fields.fax]\ntype = \"Data\"\nindex = true\n"), &[]),
    )
    .unwrap();
    assert!(Chain::conflicts(&objects(&phone), &objects(&fax_index)).is_empty());
}
