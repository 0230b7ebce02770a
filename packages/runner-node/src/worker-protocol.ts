/**
 * Messages between the HTTP thread and the handler worker. One message each
 * way per call; bodies travel as transferred ArrayBuffers (or a string for
 * the common text reply), never as JSON.
 */

export type ToWorker =
  | {
      t: "load";
      url: string;
      exportName: string;
      /** Inline code: the thread writes it to `url`'s file first (the HTTP thread meanwhile takes the next request). */
      code?: string;
    }
  | {
      t: "call";
      id: number;
      method: string;
      /** Path and query as the handler sees them: `/rest?q`. */
      path: string;
      /** Flat `[name, value, name, value, …]`, as node's `rawHeaders`. */
      headers: string[];
      body: ArrayBuffer | null;
    }
  | { t: "ping"; id: number };

export type FromWorker =
  /** The thread has run its warm-up: a specialization now costs only the module's own import. */
  | { t: "warm" }
  | { t: "loaded" }
  | { t: "load-failed"; message: string; stack: string | undefined }
  | { t: "result"; id: number; status: number; headers: string[]; body: ArrayBuffer | string | null }
  | { t: "threw"; id: number; message: string; stack: string | undefined }
  | { t: "pong"; id: number };

/** `workerData` of a handler worker. */
export interface WorkerInit {
  /** A private directory where the warm-up may write throwaway modules. */
  warmDir: string;
  /** Run the warm-up (a generic runner waiting for a specialization); not when the code is given at start. */
  warmUp: boolean;
}
