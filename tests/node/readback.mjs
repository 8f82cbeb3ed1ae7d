// Reads RFC 5322 messages the way a Node mail client does (nodemailer's mailparser, as used by
// MailDev) and prints what it found as JSON: one object per file given on the command line.
import { readFile } from "node:fs/promises";
import { simpleParser } from "mailparser";

const results = [];
for (const path of process.argv.slice(2)) {
  const parsed = await simpleParser(await readFile(path));
  const list = parsed.headers.get("list") || {};
  // mailparser files List-Unsubscribe-Post under list["unsubscribe-post"].name.
  const post = list["unsubscribe-post"];
  results.push({
    path,
    subject: parsed.subject ?? null,
    messageId: parsed.messageId ?? null,
    listUnsubscribeUrl: list.unsubscribe ? list.unsubscribe.url ?? null : null,
    listUnsubscribeMail: list.unsubscribe ? list.unsubscribe.mail ?? null : null,
    listId: list.id ? list.id.id ?? null : null,
    listArchiveUrl: list.archive ? list.archive.url ?? null : null,
    listUnsubscribePost: post ? post.name ?? null : null,
    to: parsed.to ? parsed.to.value.map((a) => a.address) : [],
    from: parsed.from ? parsed.from.value.map((a) => a.address) : [],
    html: typeof parsed.html === "string" ? parsed.html : null,
    text: parsed.text ?? null,
  });
}
process.stdout.write(JSON.stringify(results));
