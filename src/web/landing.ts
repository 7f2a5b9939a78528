/** A plain page at / until the buyer page exists: it says what runs here and where the API is. */
export function landingPage(): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>onsale</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem">
<h1>onsale is running</h1>
<p>The events on sale are listed at <a href="/api/events">/api/events</a>.
Buy with <code>POST /api/events/:eventId/purchases</code> and follow the purchase at its <code>statusUrl</code>.</p>
<p>Health: <a href="/healthz">/healthz</a> · Readiness: <a href="/readyz">/readyz</a> · Metrics: <a href="/metrics">/metrics</a></p>
</body>
</html>
`;
}
