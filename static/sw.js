// Service worker of the calendar page: shows reminders sent by Web Push and opens the event
// when the notification is clicked. The payload is JSON with title, body, url and tag.
'use strict';

self.addEventListener('install', () => self.skipWaiting());

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let data = {};
  if (event.data) {
    try {
      data = event.data.json();
    } catch (_) {
      data = { body: event.data.text() };
    }
  }
  const shown = self.registration.showNotification(data.title || 'rose-events', {
    body: data.body || '',
    tag: data.tag,
    data: { url: data.url || '/' },
  });
  event.waitUntil(shown);
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || '/';
  const opened = self.clients
    .matchAll({ type: 'window', includeUncontrolled: true })
    .then((windows) => {
      for (const client of windows) {
        if (client.url === url && 'focus' in client) {
          return client.focus();
        }
      }
      return self.clients.openWindow(url);
    });
  event.waitUntil(opened);
});
