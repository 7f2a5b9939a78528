import nodemailer, { type Transporter } from 'nodemailer';
import type { Mailer, MailFailure, OutgoingMail } from '../../ports/mailer.js';

/**
 * Ticket emails over SMTP with nodemailer, to the server of ONSALE_SMTP_URL (smtp://, or smtps:// for TLS
 * from the start; user and password in the URL). Timeouts are short so that a hung server fails an
 * attempt well within the outbox's lease, and the attempt is retried later.
 */
export class SmtpMailer implements Mailer {
  readonly #transport: Transporter;
  readonly #from: string;

  constructor(url: string, from: string) {
    this.#transport = nodemailer.createTransport({
      url,
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 15_000,
    });
    this.#from = from;
  }

  async send(mail: OutgoingMail): Promise<void> {
    try {
      await this.#transport.sendMail({
        from: this.#from,
        to: mail.to,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        messageId: mail.messageId,
        attachments: mail.images.map((image) => ({
          cid: image.cid,
          filename: image.filename,
          contentType: image.contentType,
          content: Buffer.from(image.content),
          contentDisposition: 'inline' as const,
        })),
      });
    } catch (error) {
      const code = (error as { responseCode?: unknown }).responseCode;
      const failure = new Error(`SMTP: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      }) as MailFailure;
      failure.permanent = typeof code === 'number' && code >= 500;
      throw failure;
    }
  }

  async close(): Promise<void> {
    this.#transport.close();
  }
}
