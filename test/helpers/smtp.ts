import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  parsed: ParsedMail;
  raw: string;
}

export interface RunningSmtp {
  port: number;
  mails: ReceivedMail[];
  /** Messages whose DATA arrived, including any the server never answered (see `hangFirst`). */
  dataStarted: () => number;
  close: () => Promise<void>;
}

/**
 * A real SMTP server (the smtp-server package) on 127.0.0.1:`port`, keeping every message it accepts,
 * parsed. No TLS and no login, as a local relay. With `hangFirst`, the first message is read in full and
 * never answered: the sender is left waiting mid-send, as when it dies there.
 */
export async function startSmtp(port: number, opts: { hangFirst?: boolean } = {}): Promise<RunningSmtp> {
  const mails: ReceivedMail[] = [];
  let started = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    closeTimeout: 500,
    onData(stream, _session, callback) {
      started += 1;
      const hang = opts.hangFirst === true && started === 1;
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (hang) return; // read, never answered
        const raw = Buffer.concat(chunks).toString('utf8');
        simpleParser(raw).then(
          (parsed) => {
            mails.push({ parsed, raw });
            callback();
          },
          (error: Error) => callback(error),
        );
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port,
    mails,
    dataStarted: () => started,
    close: () =>
      new Promise<void>((resolve) => {
        // Open connections (a hung one) are ended too.
        server.close(() => resolve());
        for (const connection of (server as unknown as { connections: Set<{ close(): void }> }).connections ??
          [])
          connection.close();
      }),
  };
}
