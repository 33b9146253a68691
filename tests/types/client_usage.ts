// Compiled (not run) by tests/integration/client_types.test.js with tsc --strict:
// the client's declarations (clients/js/wshub.d.ts) must describe the API as used here.
import connect, { WshubClient, WshubError, backoffDelay, CLOSE_TOKEN_EXPIRED, type State, type ServerMessage } from '../../clients/js/wshub.js';

const c: WshubClient = connect('ws://localhost:8080/ws', {
  getToken: async () => 'token',
  backoff: { initial: 500, max: 30000 },
  heartbeat: { interval: 25000, timeout: 10000 },
  queueLimit: 50,
  onChatMessage: (p) => console.log(p.user_id, p.content),
  onNotification: (p) => console.log(p.title, p.priority),
});
const s: State = c.state;
c.on('state', (now: State, prev: State) => console.log(prev, '->', now, s));
c.on('joined', (i) => console.log(i.room_id, i.recovered === true, i.replayed));
c.on('recovery_failed', (i) => console.log(i.stream, i.lastSeq));
c.on('disconnect', (i) => console.log(i.code, i.delay));
c.on('close', (i) => console.log(i.code === CLOSE_TOKEN_EXPIRED, i.byClient));
c.on('custom_type', (payload: unknown, msg: ServerMessage) => console.log(payload, msg.seq));
c.onDataUpdate = (p) => console.log(p.data);

async function main(): Promise<void> {
  const j: ServerMessage = await c.join('lobby', { since: { seq: 3, epoch: 'e1' } });
  const ack = await c.chat('lobby', 'hi');
  await c.sendToRoom('lobby', { text: 'x' });
  await c.sendToUser('bob', { text: 'psst' });
  const rooms = await c.listRooms();
  const first: string | undefined = rooms.rooms[0]?.room_id;
  const n: number = (await c.onlineUsers()).count;
  try {
    await c.leave('lobby');
  } catch (e) {
    if (e instanceof WshubError) console.log(e.code, e.reply?.type);
  }
  const d: number = backoffDelay(3, { initial: 100, max: 1000, factor: 2 });
  console.log(j.type, ack.payload, first, n, d, c.send('ping', {}));
  c.close();
}
void main();
