/** An image sent inside an email and shown by `cid:` reference from its HTML. */
export interface InlineImage {
  cid: string;
  filename: string;
  contentType: string;
  content: Uint8Array;
}

/** One email, composed (src/mail) and ready to send. */
export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** `<…@…>`: stable for one purchase, so a receiver can drop a second copy of the same email. */
  messageId: string;
  images: InlineImage[];
}

/**
 * Sends email. send() resolves once the server has taken the message; it rejects with a MailFailure when
 * it did not: `permanent` when the server refused it for good (a 5xx answer: the address does not exist),
 * so that the caller stops trying.
 */
export interface Mailer {
  send(mail: OutgoingMail): Promise<void>;
  close(): Promise<void>;
}

export interface MailFailure extends Error {
  permanent: boolean;
}
