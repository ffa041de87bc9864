// The official JavaScript client against a running stack: what a JS app (or Agent Chat UI)
// does, printed as one JSON line for tests/e2e/test_js_sdk.py to check.
// Usage: AGENT_URL=http://... AGENT_KEY=ar_... node sdk_check.mjs
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.env.AGENT_URL, apiKey: process.env.AGENT_KEY });
const ask = (content) => ({ messages: [{ role: "user", content }] });

const assistants = await client.assistants.search({ limit: 10 });
const thread = await client.threads.create({ metadata: { from: "js" } });
const waited = await client.runs.wait(thread.thread_id, "react", { input: ask("hello js") });

const events = [];
let tokens = "";
for await (const part of client.runs.stream(thread.thread_id, "react", {
  input: ask("what is 6 * 7?"),
  streamMode: ["values", "messages-tuple"],
})) {
  events.push(part.event);
  if (part.event === "messages") tokens += part.data[0].content ?? "";
}

const state = await client.threads.getState(thread.thread_id);
const history = await client.threads.getHistory(thread.thread_id, { limit: 3 });
const found = await client.threads.search({ metadata: { from: "js" } });
await client.store.putItem(["js", "notes"], "n1", { text: "from node" });
const items = await client.store.searchItems(["js", "notes"]);

console.log(
  JSON.stringify({
    graphs: assistants.map((a) => a.graph_id).sort(),
    waited: waited.messages.at(-1).content,
    events: [...new Set(events)],
    tokens,
    messages: state.values.messages.length,
    history: history.length,
    found: found.map((t) => t.thread_id),
    thread: thread.thread_id,
    items: items.items.map((i) => i.value.text),
  }),
);
