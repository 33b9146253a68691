// Type declarations for wshub.js (checked by tsc in the tests: tests/js/client_types.ts).

export declare const VERSION: string;
/** Close code for a policy violation: the client stops and does not reconnect. */
export declare const CLOSE_POLICY: 1008;
/** Close code for a token that expired on an open connection: get a new token, reconnect. */
export declare const CLOSE_TOKEN_EXPIRED: 4001;

export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface BackoffOptions {
  /** First cap in ms (default 500). */
  initial?: number;
  /** Largest cap in ms (default 30000). */
  max?: number;
  /** Growth of the cap per attempt (default 2). */
  factor?: number;
}

export interface HeartbeatOptions {
  /** Send an application-level ping after this many ms without any message (default 25000). */
  interval?: number;
  /** Drop the connection when nothing arrives this many ms after the ping (default 10000). */
  timeout?: number;
}

/** A server message (docs/protocol.md). */
export interface ServerMessage<P = any> {
  type: string;
  payload: P;
  timestamp: string;
  from?: string;
  room_id?: string;
  seq?: number;
  id?: string | number;
  trace_id?: string;
  span_id?: string;
}

export interface ChatPayload { room_id: string; user_id: string; content: string }
export interface NotificationPayload { title: string; body?: string; link?: string; priority?: 'low' | 'normal' | 'high' }
export interface DataUpdatePayload { room_id?: string; source?: string; data: any }

export interface ConnectOptions {
  /** A fixed token (user id with --auth none, or a JWT). */
  token?: string;
  /** Called before every (re)connect and on token_expiring; may be async. */
  getToken?: () => string | Promise<string>;
  backoff?: BackoffOptions;
  /** Timeout of a request's reply, ms (default 10000). */
  requestTimeout?: number;
  /** Messages kept while offline; more are rejected with code queue_full (default 100). */
  queueLimit?: number;
  /** false turns the watchdog off. */
  heartbeat?: HeartbeatOptions | false;
  /** Time allowed for the WebSocket to open, ms (default 15000). */
  connectTimeout?: number;
  /** Ask the server to replay the user stream (?since=&epoch=) on reconnect (default true). */
  recoverUser?: boolean;
  /** Where the token goes: the ?token= query (default) or a bearer.<token> subprotocol. */
  tokenIn?: 'query' | 'protocol';
  /** A WebSocket constructor (default: the global one, else the ws package). */
  WebSocket?: any;
  /** Random source in [0, 1) for the backoff jitter (tests). */
  random?: () => number;
  onConnect?: (info: { reconnect: boolean }) => void;
  onChatMessage?: (payload: ChatPayload, msg: ServerMessage<ChatPayload>) => void;
  onNotification?: (payload: NotificationPayload, msg: ServerMessage<NotificationPayload>) => void;
  onDataUpdate?: (payload: DataUpdatePayload, msg: ServerMessage<DataUpdatePayload>) => void;
}

export interface JoinedInfo {
  room_id: string;
  seq?: number;
  epoch?: string;
  /** true: missed messages follow; false: they could not be recovered; undefined: a fresh join. */
  recovered?: boolean;
  replayed: number;
  rejoin: boolean;
}

export interface RecoveryFailedInfo {
  stream: 'room' | 'user';
  room_id?: string;
  user_id?: string;
  seq?: number;
  epoch?: string;
  lastSeq: number | null;
  lastEpoch: string | null;
  /** Cluster mode: the room's stream started over while joined (Redis lost it). */
  reset?: boolean;
}

export interface DisconnectInfo { code: number; reason: string; delay: number; attempt: number }
export interface CloseInfo { code: number; reason: string; byClient: boolean }
export interface SessionInfo { user_id: string; seq: number; epoch: string; recovered?: boolean; replayed?: number }

export interface ClientEvents {
  state: (state: State, prev: State) => void;
  connect: (info: { reconnect: boolean; userId: string | null }) => void;
  disconnect: (info: DisconnectInfo) => void;
  close: (info: CloseInfo) => void;
  joined: (info: JoinedInfo) => void;
  recovery_failed: (info: RecoveryFailedInfo) => void;
  session: (info: SessionInfo) => void;
  token_expiring: (payload: { expires_at: number; expires_in: number }) => void;
  token_refreshed: (payload: { expires_at?: number }) => void;
  heartbeat_timeout: (info: { silentFor: number }) => void;
  error: (err: Error) => void;
  handler_error: (err: unknown, where: string) => void;
  message: (msg: ServerMessage) => void;
  chat_message: (payload: ChatPayload, msg: ServerMessage<ChatPayload>) => void;
  notification: (payload: NotificationPayload, msg: ServerMessage<NotificationPayload>) => void;
  data_update: (payload: DataUpdatePayload, msg: ServerMessage<DataUpdatePayload>) => void;
}

export declare class WshubError extends Error {
  constructor(code: string, message: string, reply?: ServerMessage);
  /** The server's error code (bad_field, forbidden, ...) or timeout, queue_full, disconnected, closed, left. */
  code: string;
  reply?: ServerMessage;
}

export declare function backoffDelay(attempt: number, backoff?: Required<BackoffOptions>, random?: () => number): number;

export declare class WshubClient {
  constructor(url: string, options?: ConnectOptions);
  readonly url: string;
  readonly state: State;
  /** The user id, once the server said it (session message). */
  readonly userId: string | null;
  /** Rooms this client is in or will re-join, with the last position seen. */
  readonly rooms: Map<string, { seq: number | null; epoch: string | null; joined: boolean }>;

  open(): this;
  close(code?: number, reason?: string): void;

  on<K extends keyof ClientEvents>(type: K, fn: ClientEvents[K]): () => void;
  on(type: string, fn: (payload: any, msg: ServerMessage) => void): () => void;
  off(type: string, fn: (...args: any[]) => void): void;

  join(room: string, options?: { presence?: boolean; since?: { seq: number; epoch: string } }): Promise<ServerMessage>;
  leave(room: string): Promise<ServerMessage>;
  sendToRoom(room: string, payload?: Record<string, unknown>): Promise<ServerMessage>;
  sendToUser(user: string, payload?: Record<string, unknown>): Promise<ServerMessage>;
  chat(room: string, text: string): Promise<ServerMessage>;
  request(type: string, payload?: Record<string, unknown>, options?: { queue?: boolean; timeout?: number }): Promise<ServerMessage>;
  listRooms(options?: { cursor?: string; limit?: number }): Promise<{ rooms: { room_id: string; members: number }[]; count: number; next_cursor?: string }>;
  onlineUsers(): Promise<{ online_users: string[]; count: number }>;
  roomMembers(room: string): Promise<{ room_id: string; members: string[]; count: number }>;
  ping(timeout?: number): Promise<ServerMessage>;
  /** The guide's send: no id, no reply. true: sent or queued; false: refused (queue full, closed), also an 'error' event. */
  send(type: string, payload?: unknown): boolean;

  onConnect(info: { reconnect: boolean }): void;
  onChatMessage(payload: ChatPayload, msg: ServerMessage<ChatPayload>): void;
  onNotification(payload: NotificationPayload, msg: ServerMessage<NotificationPayload>): void;
  onDataUpdate(payload: DataUpdatePayload, msg: ServerMessage<DataUpdatePayload>): void;
}

export declare function connect(url: string, options?: ConnectOptions): WshubClient;
export default connect;
