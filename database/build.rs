// sqlx::migrate! embeds database/migrations/ at build time; a NEW migration file must
// trigger a rebuild too, which cargo cannot know by itself.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
