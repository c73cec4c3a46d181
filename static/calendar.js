// Calendar page: registers the service worker, and on "Remind me" subscribes this browser to
// Web Push and requests reminders of that occurrence.
'use strict';

const statusLine = document.getElementById('push-status');

function showStatus(text) {
  statusLine.textContent = text;
}

async function registerWorker() {
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) {
    document.body.dataset.sw = 'unsupported';
    showStatus('This browser cannot show reminders.');
    return null;
  }
  await navigator.serviceWorker.register('/sw.js');
  const registration = await navigator.serviceWorker.ready;
  document.body.dataset.sw = 'registered';
  return registration;
}

// applicationServerKey takes raw bytes; the server sends base64url without padding.
function keyBytes(text) {
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

async function send(method, path, token, body) {
  const response = await fetch(path, {
    method,
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || response.statusText);
  }
  return response.json();
}

// NOTE: the page asks for a write token because people have no login of their own here; a
// host such as rose-ash is expected to call the API on the person's behalf instead.
async function remind(item) {
  const form = document.getElementById('who');
  const person = form.person.value.trim();
  const token = form.token.value.trim();
  if (!person || !token) {
    throw new Error('enter your id and token first');
  }
  localStorage.setItem('rose-events-person', person);
  const registration = await registerWorker();
  if (!registration) {
    return;
  }
  const key = await (await fetch('/api/v1/push/vapid-public-key')).json();
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: keyBytes(key.public_key),
  });
  await send('POST', '/api/v1/push/subscriptions', token, { person, ...subscription.toJSON() });
  const occurrence = { event_id: Number(item.dataset.eventId) };
  if (item.dataset.recurrenceId) {
    occurrence.recurrence_id = item.dataset.recurrenceId;
  }
  await send('POST', '/api/v1/people/' + encodeURIComponent(person) + '/reminders', token, occurrence);
  showStatus('Reminder set for ' + item.querySelector('.title').textContent + '.');
}

document.getElementById('who').person.value = localStorage.getItem('rose-events-person') || '';
registerWorker().catch((error) => {
  document.body.dataset.sw = 'failed';
  showStatus('The service worker did not register: ' + error.message);
});
for (const button of document.querySelectorAll('button.remind')) {
  const item = button.closest('li');
  button.addEventListener('click', () => {
    remind(item).catch((error) => showStatus('Could not set the reminder: ' + error.message));
  });
}
