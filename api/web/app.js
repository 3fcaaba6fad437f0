/* Movie Time: the web page.
 *
 * Plain JavaScript with no build step and no dependency. It talks only to the public Movie Time
 * API of its own origin (documented at /docs), so it is also a working example of that API:
 *
 *   onboarding       GET /clusters, GET /clusters/{id} (genre names), GET /onboarding/movies
 *                    (the questionnaire), GET /movies/search, POST /users
 *   recommendations  GET /user/{id}/recommendation, GET /movie/{id}/metadata (overviews)
 *   feedback         POST /user/{id}/feedback, POST /user/{id}/ratings (bearer token)
 *   movie page       GET /movie/{id}/metadata, GET /movie/{id}/similar
 *   lists            POST /lists (bearer token), GET /lists/{slug} (no token)
 *   together         POST /groups, GET /groups/{slug}/recommendation (links carry user ids only)
 *
 * The new user's id and token stay in this browser (localStorage). Views are addressed by the
 * URL's fragment (#/movie/260, #/lists/<slug>), so every view has a link and the page is never
 * reloaded. Everything that comes from the API is put in the page as text (textContent), never
 * as HTML.
 */
'use strict';

(() => {
  const N_RECS = 12;
  const N_SIMILAR = 12;
  const SEARCH_LIMIT = 8;
  const SEARCH_DELAY_MS = 200;
  const MIN_GENRES = 3;
  const ASKED_PAGE = 12; // movies of the questionnaire shown at a time
  const VARIETY = 0.2; // "More variety": keeps 95% of NDCG@10 on validation (README, "More variety")
  const TIMEOUT_MS = 15000;
  const SLUG_RE = /^[A-Za-z0-9_-]{22}$/;
  const RATINGS = [5, 4.5, 4, 3.5, 3, 2.5, 2, 1.5, 1, 0.5];
  const KEY = {
    user: 'movietime.user',
    list: 'movietime.list',
    shared: 'movietime.shared',
    actions: 'movietime.actions',
    variety: 'movietime.variety',
  };

  // --- storage: localStorage when the browser allows it, else this visit only ----------------

  const memory = new Map();
  const storage = {
    get(key, fallback) {
      if (memory.has(key)) return memory.get(key);
      try {
        const raw = window.localStorage.getItem(key);
        return raw === null ? fallback : JSON.parse(raw);
      } catch (_) {
        return fallback;
      }
    },
    set(key, value) {
      memory.set(key, value);
      try {
        window.localStorage.setItem(key, JSON.stringify(value));
      } catch (_) { /* storage disabled or full: kept in memory for this visit */ }
    },
    remove(key) {
      memory.delete(key);
      try {
        window.localStorage.removeItem(key);
      } catch (_) { /* nothing to remove */ }
    },
  };

  function loadUser() {
    const u = storage.get(KEY.user, null);
    return u && Number.isInteger(u.userId) && typeof u.token === 'string' ? u : null;
  }

  function loadList() {
    const list = storage.get(KEY.list, []);
    return Array.isArray(list) ? list.filter((m) => m && Number.isInteger(m.movieId)) : [];
  }

  let user = loadUser();
  let myList = loadList();
  let genresCache = null;
  let pendingRecs = null; // the recommendations POST /users answered, shown without a second request
  const overviews = new Map(); // movieId -> Promise of the overview text (or null)

  // --- DOM helpers -------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') el.className = value;
      else if (name === 'text') el.textContent = value;
      else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const $ = (id) => document.getElementById(id);
  const main = $('main');
  const banner = $('banner');
  const announcer = $('announcer');

  function show(...children) {
    main.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  function announce(text) {
    announcer.textContent = '';
    window.setTimeout(() => { announcer.textContent = text; }, 50);
  }

  function loading(text) {
    return h('p', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
  }

  function focusHeading() {
    const heading = main.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }

  function displayTitle(movie) {
    return movie.name || movie.title || `Movie ${movie.movieId}`;
  }

  function formatRating(value) {
    return Number.isInteger(value) ? `${value}.0` : String(value);
  }

  // --- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // A new Idempotency-Key: a retry of the same write sends it again and is applied once.
  function newKey() {
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function api(path, { method = 'GET', body, auth = false, key } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (key) headers['Idempotency-Key'] = key;
    if (auth) {
      if (!user) throw new ApiError('Create your profile first: this needs your Movie Time token.', 401, 'no_token');
      headers.Authorization = `Bearer ${user.token}`;
    }
    const controller = new AbortController();
    const timer = window.setTimeout(() => controller.abort(), TIMEOUT_MS);
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        credentials: 'omit',
      });
    } catch (_) {
      const why = controller.signal.aborted ? `did not answer within ${TIMEOUT_MS / 1000} s` : 'could not be reached';
      throw new ApiError(`The Movie Time API ${why}. Check your connection, then try again.`, 0, 'unreachable');
    } finally {
      window.clearTimeout(timer);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error && data.error.message ? data.error.message : `HTTP ${response.status}`;
      const code = data && data.error && data.error.code ? data.error.code : `http_${response.status}`;
      if (response.status === 503) {
        throw new ApiError(`Movie Time is unavailable right now (${message}). Please try again in a moment.`, 503, code);
      }
      if (response.status === 401 || response.status === 403) {
        throw new ApiError(`Your profile's key was not accepted (${message}). Use "Start over" to create a new profile.`, response.status, code);
      }
      throw new ApiError(message.charAt(0).toUpperCase() + message.slice(1), response.status, code);
    }
    if (data === null) throw new ApiError('The API sent an answer this page cannot read.', response.status, 'bad_response');
    return data;
  }

  // --- the error banner ------------------------------------------------------------------------

  let retryAction = null;

  function showError(err, retry) {
    const message = err instanceof ApiError ? err.message : `Something went wrong on this page: ${err.message}`;
    $('banner-text').textContent = message;
    retryAction = retry || null;
    $('banner-retry').hidden = !retry;
    banner.hidden = false;
  }

  function hideBanner() {
    banner.hidden = true;
    retryAction = null;
  }

  $('banner-retry').addEventListener('click', () => {
    const retry = retryAction;
    hideBanner();
    if (retry) retry();
  });
  $('banner-close').addEventListener('click', hideBanner);

  // --- my list (kept in this browser until shared) ---------------------------------------------

  function inList(movieId) {
    return myList.some((m) => m.movieId === movieId);
  }

  function toggleList(movie) {
    if (inList(movie.movieId)) {
      myList = myList.filter((m) => m.movieId !== movie.movieId);
    } else {
      myList.push({ movieId: movie.movieId, title: displayTitle(movie), year: movie.year || null });
    }
    storage.set(KEY.list, myList);
    updateListCount();
    return inList(movie.movieId);
  }

  function updateListCount() {
    $('list-count').textContent = String(myList.length);
    $('nav-list').setAttribute('aria-label', `My list, ${myList.length} ${myList.length === 1 ? 'movie' : 'movies'}`);
  }

  function listButton(movie) {
    const button = h('button', { type: 'button', class: 'button ghost add-list' });
    const paint = () => {
      const on = inList(movie.movieId);
      button.textContent = on ? '✓ In my list' : '+ My list';
      button.setAttribute('aria-pressed', on ? 'true' : 'false');
      button.setAttribute('aria-label', `${on ? 'Remove' : 'Add'} ${displayTitle(movie)} ${on ? 'from' : 'to'} my list`);
    };
    paint();
    button.addEventListener('click', () => {
      const on = toggleList(movie);
      paint();
      announce(`${displayTitle(movie)} ${on ? 'added to' : 'removed from'} your list.`);
    });
    return button;
  }

  // --- movie pieces ------------------------------------------------------------------------------

  function poster(movie, size) {
    const box = h('div', { class: `poster ${size || ''}` });
    const fallback = () => {
      box.replaceChildren(h('span', { class: 'poster-fallback', 'aria-hidden': 'true' }, displayTitle(movie)));
    };
    if (movie.poster_url && /^https:\/\/image\.tmdb\.org\//.test(movie.poster_url)) {
      const img = h('img', {
        src: movie.poster_url,
        alt: `Poster of ${displayTitle(movie)}`,
        loading: 'lazy',
        decoding: 'async',
        width: 342,
        height: 513,
      });
      img.addEventListener('error', fallback, { once: true });
      box.append(img);
    } else {
      fallback();
    }
    return box;
  }

  function movieLink(movie) {
    return h('a', { href: `#/movie/${movie.movieId}`, class: 'movie-link' }, displayTitle(movie));
  }

  function yearText(movie) {
    return movie.year ? ` (${movie.year})` : '';
  }

  function genreLine(movie) {
    const genres = (movie.genres || []).filter((g) => g && g !== '(no genres listed)');
    return genres.length ? h('p', { class: 'genres' }, genres.join(' · ')) : null;
  }

  function overviewOf(movieId) {
    if (!overviews.has(movieId)) {
      const request = api(`/movie/${movieId}/metadata`).then(
        (meta) => meta.overview || null,
        (err) => {
          overviews.delete(movieId); // try again next time
          throw err;
        },
      );
      overviews.set(movieId, request);
    }
    return overviews.get(movieId);
  }

  function fillOverview(el, movieId) {
    overviewOf(movieId).then(
      (text) => {
        el.textContent = text || 'No overview available.';
        el.classList.toggle('muted', !text);
        el.removeAttribute('aria-busy');
      },
      () => {
        el.textContent = 'The overview could not be loaded.';
        el.classList.add('muted');
        el.removeAttribute('aria-busy');
      },
    );
  }

  function ratingSelect(id, label, selected) {
    return [
      h('label', { for: id, class: 'visually-hidden' }, label),
      h('select', { id, class: 'rating-select' },
        h('option', { value: '' }, 'Rating…'),
        RATINGS.map((r) => h('option', { value: r, selected: r === selected }, `${formatRating(r)} ★`))),
    ];
  }

  // A movie's feedback buttons: like, dislike, a rating; onDone(kind, value) after the API took it.
  function feedbackControls(movie, idPrefix, onDone) {
    const title = displayTitle(movie);
    const selectId = `${idPrefix}-rating-${movie.movieId}`;
    const [label, select] = ratingSelect(selectId, `Your rating of ${title}`, null);
    const buttons = [];
    const send = async (kind, value, key = newKey()) => {
      buttons.forEach((b) => { b.disabled = true; });
      select.disabled = true;
      try {
        if (kind === 'rate') {
          await api(`/user/${user.userId}/ratings`, { method: 'POST', body: { movieId: movie.movieId, rating: value }, auth: true, key });
        } else {
          await api(`/user/${user.userId}/feedback`, { method: 'POST', body: { movieId: movie.movieId, action: kind }, auth: true, key });
        }
      } catch (err) {
        buttons.forEach((b) => { b.disabled = false; });
        select.disabled = false;
        showError(err, () => send(kind, value, key));  // the retry is the same write
        return;
      }
      rememberAction(movie.movieId, kind, value);
      onDone(kind, value);
      buttons.forEach((b) => { b.disabled = false; });
      select.disabled = false;
    };
    const like = h('button', { type: 'button', class: 'button like', 'aria-label': `Like ${title}`, onclick: () => send('like') }, icon('like'), 'Like');
    const dislike = h('button', { type: 'button', class: 'button dislike', 'aria-label': `Dislike ${title}`, onclick: () => send('dislike') }, icon('dislike'), 'Dislike');
    const hint = h('span', { class: 'rate-hint', role: 'status' });
    const rate = h('button', {
      type: 'button',
      class: 'button rate',
      'aria-label': `Rate ${title}`,
      onclick: () => {
        if (!select.value) {
          hint.textContent = 'Pick a rating first.';
          select.focus();
          return;
        }
        hint.textContent = '';
        send('rate', Number(select.value));
      },
    }, 'Rate');
    buttons.push(like, dislike, rate);
    return h('div', { class: 'actions', role: 'group', 'aria-label': `Your opinion of ${title}` },
      like, dislike, h('span', { class: 'rate-group' }, label, select, rate), hint);
  }

  // Small line icons drawn here (no icon font, no emoji: both may be missing on a device).
  const ICONS = {
    like: 'M12 20.5s-7.5-4.6-9.3-9.2C1.6 8.4 3.4 4.5 7.1 4.5c2.1 0 3.6 1.2 4.9 3 1.3-1.8 2.8-3 4.9-3 3.7 0 5.5 3.9 4.4 6.8-1.8 4.6-9.3 9.2-9.3 9.2z',
    dislike: 'M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM5.6 5.6l12.8 12.8',
  };

  function icon(name) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('class', `icon icon-${name}`);
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', ICONS[name]);
    svg.append(path);
    return svg;
  }

  function rememberAction(movieId, kind, value) {
    const actions = storage.get(KEY.actions, {});
    actions[movieId] = kind === 'rate' ? { kind, value } : { kind };
    storage.set(KEY.actions, actions);
  }

  function actionText(kind, value, movie) {
    const title = displayTitle(movie);
    if (kind === 'like') return `You liked ${title}.`;
    if (kind === 'dislike') return `You disliked ${title}.`;
    return `You rated ${title} ${formatRating(value)} ★.`;
  }

  // --- search: results while typing ---------------------------------------------------------------

  // Calls onResults(results, query) or onError(err, query) for the latest query only.
  function liveSearch(input, { onResults, onError, onClear }) {
    let timer = 0;
    let seq = 0;
    const run = async (query) => {
      const mine = ++seq;
      try {
        const data = await api(`/movies/search?q=${encodeURIComponent(query)}&limit=${SEARCH_LIMIT}`);
        if (mine === seq) onResults(data.results || [], query);
      } catch (err) {
        if (mine === seq) onError(err, query, () => run(query));
      }
    };
    input.addEventListener('input', () => {
      window.clearTimeout(timer);
      const query = input.value.trim();
      if (query.length < 2) {
        seq++;
        onClear();
        return;
      }
      timer = window.setTimeout(() => run(query), SEARCH_DELAY_MS);
    });
  }

  const searchInput = $('search-input');
  const searchPanel = $('search-panel');
  const searchStatus = $('search-status');
  const searchResults = $('search-results');

  function openSearch() {
    searchPanel.hidden = false;
    searchInput.setAttribute('aria-expanded', 'true');
  }

  function closeSearch(clear) {
    searchPanel.hidden = true;
    searchInput.setAttribute('aria-expanded', 'false');
    if (clear) {
      searchInput.value = '';
      searchResults.replaceChildren();
      searchStatus.textContent = '';
    }
  }

  liveSearch(searchInput, {
    onResults(results, query) {
      searchResults.replaceChildren(...results.map((m) => h('li', {},
        h('a', { href: `#/movie/${m.movieId}`, class: 'result' },
          poster(m, 'thumb'),
          h('span', { class: 'result-text' },
            h('span', { class: 'result-title' }, displayTitle(m)),
            h('span', { class: 'result-meta' }, [m.year, (m.genres || []).slice(0, 3).join(', ')].filter(Boolean).join(' · ')))))));
      searchStatus.textContent = results.length
        ? `${results.length} ${results.length === 1 ? 'title matches' : 'titles match'} “${query}”. Use the down arrow to reach them.`
        : `No titles match “${query}”.`;
      openSearch();
    },
    onError(err, query, retry) {
      searchResults.replaceChildren();
      searchStatus.textContent = err.status === 400 ? err.message : 'Search failed.';
      openSearch();
      if (err.status !== 400) showError(err, retry);
    },
    onClear() {
      closeSearch(false);
      searchResults.replaceChildren();
      searchStatus.textContent = '';
    },
  });

  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const first = searchResults.querySelector('a');
    if (first) first.click();
  });

  searchInput.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown') {
      const first = searchResults.querySelector('a');
      if (first && !searchPanel.hidden) {
        event.preventDefault();
        first.focus();
      }
    } else if (event.key === 'Escape') {
      closeSearch(false);
    }
  });

  searchResults.addEventListener('keydown', (event) => {
    const links = [...searchResults.querySelectorAll('a')];
    const at = links.indexOf(document.activeElement);
    if (event.key === 'ArrowDown' && at >= 0) {
      event.preventDefault();
      links[Math.min(at + 1, links.length - 1)].focus();
    } else if (event.key === 'ArrowUp' && at >= 0) {
      event.preventDefault();
      (at === 0 ? searchInput : links[at - 1]).focus();
    } else if (event.key === 'Escape') {
      closeSearch(false);
      searchInput.focus();
    }
  });

  searchInput.addEventListener('focus', () => {
    if (searchResults.children.length || searchStatus.textContent) openSearch();
  });

  document.addEventListener('click', (event) => {
    if (!$('search-form').contains(event.target)) closeSearch(false);
  });

  $('search-form').addEventListener('focusout', (event) => {
    if (!event.relatedTarget || !$('search-form').contains(event.relatedTarget)) {
      window.setTimeout(() => {
        if (!$('search-form').contains(document.activeElement)) closeSearch(false);
      }, 0);
    }
  });

  // --- views -------------------------------------------------------------------------------------

  async function viewHome(view) {
    return user ? viewRecommendations(view) : viewOnboarding(view);
  }

  async function loadGenres() {
    if (genresCache) return genresCache;
    const { clusters } = await api('/clusters');
    if (!clusters || !clusters.length) {
      throw new ApiError('No taste groups are published yet, so there are no genres to pick from.', 503, 'no_clusters');
    }
    const detail = await api(`/clusters/${clusters[0].clusterId}`);
    const names = new Set(Object.keys(detail.profile || {}));
    clusters.forEach((c) => (c.persona || []).forEach((g) => names.add(g)));
    genresCache = { genres: [...names].sort((a, b) => a.localeCompare(b)) };
    return genresCache;
  }

  async function viewOnboarding(view) {
    const [{ genres }, firstAsked] = await Promise.all([loadGenres(), api(`/onboarding/movies?per_page=${ASKED_PAGE}`)]);
    if (!view.current()) return;
    const picked = new Set();
    const favourites = new Map(); // movieId -> {movie, select}

    const count = h('p', { class: 'hint', id: 'genre-count', 'aria-live': 'polite' });
    const paintCount = () => {
      count.textContent = picked.size >= MIN_GENRES
        ? `${picked.size} picked.`
        : `${picked.size} picked: pick ${MIN_GENRES - picked.size} more.`;
    };
    const chips = h('div', { class: 'chips' }, genres.map((g, i) => h('label', { class: 'chip', for: `genre-${i}` },
      h('input', {
        type: 'checkbox',
        id: `genre-${i}`,
        name: 'genre',
        value: g,
        onchange: (event) => {
          if (event.target.checked) picked.add(g);
          else picked.delete(g);
          paintCount();
          if (picked.size >= MIN_GENRES) error.textContent = '';
        },
      }),
      h('span', {}, g))));
    paintCount();

    const favList = h('ul', { class: 'favourites', id: 'favourites', 'aria-label': 'Your favourite movies' });
    const favEmpty = h('p', { class: 'hint', id: 'favourites-empty' }, 'None yet: they are optional, but five make the first list much better.');
    const paintFavs = () => {
      favEmpty.hidden = favourites.size > 0;
    };
    const addFavourite = (movie) => {
      if (favourites.has(movie.movieId)) return;
      const [label, select] = ratingSelect(`fav-rating-${movie.movieId}`, `Your rating of ${displayTitle(movie)}`, 5);
      select.querySelector('option[value=""]').remove();
      const item = h('li', { class: 'favourite' },
        h('span', { class: 'favourite-title' }, displayTitle(movie), h('span', { class: 'year' }, yearText(movie))),
        h('span', { class: 'favourite-controls' }, label, select,
          h('button', {
            type: 'button',
            class: 'button ghost',
            'aria-label': `Remove ${displayTitle(movie)}`,
            onclick: () => {
              favourites.delete(movie.movieId);
              item.remove();
              main.querySelectorAll(`button[data-add="${movie.movieId}"]`).forEach((b) => {
                b.disabled = false;
                b.textContent = 'Add';
              });
              paintFavs();
              announce(`${displayTitle(movie)} removed.`);
              favSearch.focus();
            },
          }, 'Remove')));
      favourites.set(movie.movieId, { movie, select });
      favList.append(item);
      paintFavs();
      announce(`${displayTitle(movie)} added with 5 stars; change the rating if you like.`);
    };
    paintFavs();

    const favSearch = h('input', { id: 'fav-search', type: 'search', placeholder: 'e.g. Star Wars', autocomplete: 'off', maxlength: 100, 'aria-describedby': 'fav-status' });
    const favStatus = h('p', { class: 'hint', id: 'fav-status', 'aria-live': 'polite' });
    const favResults = h('ul', { class: 'pick-results', id: 'fav-results', 'aria-label': 'Matching movies' });
    const pickRow = (m) => {
      const added = favourites.has(m.movieId);
      const button = h('button', {
        type: 'button',
        class: 'button small',
        'aria-label': `Add ${displayTitle(m)}${yearText(m)} to your favourites`,
        disabled: added,
        'data-add': m.movieId,
        onclick: () => {
          addFavourite(m);
          // the same movie may be listed twice (the questionnaire and a search)
          main.querySelectorAll(`button[data-add="${m.movieId}"]`).forEach((b) => {
            b.disabled = true;
            b.textContent = 'Added';
          });
        },
      }, added ? 'Added' : 'Add');
      return h('li', {}, h('span', { class: 'pick-title' }, displayTitle(m), h('span', { class: 'year' }, yearText(m))), button);
    };
    liveSearch(favSearch, {
      onResults(results, query) {
        favResults.replaceChildren(...results.map(pickRow));
        favStatus.textContent = results.length ? `${results.length} found for “${query}”.` : `Nothing found for “${query}”.`;
      },
      onError(err, query, retry) {
        favResults.replaceChildren();
        favStatus.textContent = err.status === 400 ? err.message : 'Search failed.';
        if (err.status !== 400) showError(err, retry);
      },
      onClear() {
        favResults.replaceChildren();
        favStatus.textContent = '';
      },
    });
    favSearch.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') event.preventDefault(); // Enter in the search box must not submit the form
    });

    // the questionnaire: the served version's most rated movies, a page at a time
    const asked = h('ul', { class: 'pick-results', id: 'asked', 'aria-label': 'Movies you may have seen' });
    const more = h('button', { type: 'button', class: 'button ghost small', id: 'asked-more' }, 'Show more');
    let askedPage = firstAsked;
    const paintAsked = (body) => {
      asked.append(...body.items.map(pickRow));
      more.hidden = body.page >= body.pages;
    };
    more.addEventListener('click', async () => {
      more.disabled = true;
      try {
        askedPage = await api(`/onboarding/movies?per_page=${ASKED_PAGE}&page=${askedPage.page + 1}`);
        paintAsked(askedPage);
        announce(`${askedPage.items.length} more movies to rate.`);
      } catch (err) {
        showError(err, () => more.click());
      } finally {
        more.disabled = false;
      }
    });
    paintAsked(firstAsked);
    const suggestionRow = firstAsked.items.length ? h('div', { class: 'suggestions' },
      h('p', { class: 'hint' }, 'Seen any of these? Add the ones you have seen and rate them: five ratings make the first list much better.'),
      asked, more) : null;

    const error = h('p', { class: 'form-error', id: 'onboard-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'button primary big', id: 'onboard-submit' }, 'Get my recommendations');
    const form = h('form', { class: 'onboarding', id: 'onboarding', novalidate: true },
      h('fieldset', {},
        h('legend', {}, h('span', { class: 'step' }, '1'), ' Genres you enjoy'),
        h('p', { class: 'hint' }, `Pick at least ${MIN_GENRES}.`),
        chips, count),
      h('fieldset', {},
        h('legend', {}, h('span', { class: 'step' }, '2'), ' Movies you have seen'),
        suggestionRow,
        h('label', { for: 'fav-search' }, 'Find a movie you love'),
        favSearch, favStatus, favResults,
        h('h2', { class: 'subhead' }, 'Your favourites'),
        favEmpty, favList),
      h('div', { class: 'submit-row' }, submit, error));

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.textContent = '';
      if (picked.size < MIN_GENRES) {
        error.textContent = `Pick at least ${MIN_GENRES} genres (${picked.size} picked).`;
        const first = chips.querySelector('input:not(:checked)');
        if (first) first.focus();
        return;
      }
      const body = {
        genres: [...picked],
        ratings: [...favourites.values()].map(({ movie, select }) => ({ movieId: movie.movieId, rating: Number(select.value) })),
      };
      submit.disabled = true;
      submit.textContent = 'Finding your movies…';
      main.setAttribute('aria-busy', 'true');
      try {
        const created = await api(`/users?n=${N_RECS}`, { method: 'POST', body });
        user = { userId: created.userId, token: created.token, cluster: created.cluster };
        storage.set(KEY.user, user);
        storage.remove(KEY.actions);
        pendingRecs = { ...created, source: 'live', first: true };
        location.hash = '#/recommendations';
      } catch (err) {
        submit.disabled = false;
        submit.textContent = 'Get my recommendations';
        if (err.status === 400) error.textContent = err.message;
        else showError(err, () => form.requestSubmit());
      } finally {
        main.removeAttribute('aria-busy');
      }
    });

    show(
      h('section', { class: 'intro' },
        h('h1', {}, 'Welcome to Movie Time'),
        h('p', { class: 'lead' }, 'Tell us what you like and get movie recommendations at once. Rate, like or dismiss them and the list adapts as you go. No sign-up: your profile lives in this browser.')),
      form);
    focusHeading();
  }

  async function viewRecommendations(view) {
    if (!user) {
      location.replace('#/welcome');
      return;
    }
    let data = pendingRecs;
    pendingRecs = null;
    const first = Boolean(data && data.first);
    if (data && storage.get(KEY.variety, false)) data = null; // the first list, re-ranked
    if (!data) {
      try {
        data = await api(recsPath());
      } catch (err) {
        if (err.status !== 404) throw err;
        if (!view.current()) return;
        show(h('section', { class: 'empty-state' },
          h('h1', {}, 'We could not find your profile'),
          h('p', {}, 'This browser remembers a Movie Time profile the service no longer has (it may have been reset). Start over to create a new one.'),
          startOverButton()));
        focusHeading();
        return;
      }
    }
    if (!view.current()) return;
    const list = h('ul', { class: 'cards', id: 'recs', 'aria-label': 'Your recommendations' });
    const note = h('p', { class: 'update-note', id: 'recs-note', role: 'status', 'aria-live': 'polite' });
    const variety = h('input', {
      type: 'checkbox',
      id: 'variety',
      checked: storage.get(KEY.variety, false),
      onchange: (event) => {
        storage.set(KEY.variety, event.target.checked);
        refreshRecs(0, event.target.checked ? 'More variety: other genres come up.' : 'Your usual list.');
      },
    });
    show(
      h('section', { class: 'view-head' },
        h('div', {},
          h('h1', {}, 'Your recommendations'),
          h('p', { class: 'muted' }, first
            ? 'Here is your first list. Like, dislike or rate a movie and the list updates at once.'
            : 'Like, dislike or rate a movie and the list updates at once.')),
        h('div', { class: 'head-controls' },
          h('label', { class: 'chip toggle', for: 'variety' }, variety, h('span', {}, 'More variety')),
          h('a', { href: '#/together', class: 'button ghost', id: 'watch-together' }, 'Watch together'),
          startOverButton())),
      note,
      list);
    renderRecs(list, data.recommendations || [], new Set());
    focusHeading();
  }

  function recsPath() {
    const variety = storage.get(KEY.variety, false) ? `&diversity=${VARIETY}` : '';
    return `/user/${user.userId}/recommendation?n=${N_RECS}${variety}`;
  }

  function startOverButton() {
    return h('button', {
      type: 'button',
      class: 'button ghost',
      id: 'start-over',
      onclick: () => {
        if (!window.confirm('Start over? This browser forgets your profile and your list.')) return;
        user = null;
        myList = [];
        storage.remove(KEY.user);
        storage.remove(KEY.list);
        storage.remove(KEY.actions);
        updateListCount();
        location.hash = '#/welcome';
      },
    }, 'Start over');
  }

  function renderRecs(list, items, fresh) {
    if (!items.length) {
      list.replaceChildren(h('li', { class: 'empty-state' }, 'No recommendations left: you have seen everything we would suggest. Search for more movies above.'));
      return;
    }
    list.replaceChildren(...items.map((item, index) => recCard(item, index, fresh.has(item.movieId))));
  }

  function recCard(movie, index, isNew) {
    const overview = h('p', { class: 'overview', 'aria-busy': 'true' }, 'Loading the overview…');
    const predicted = typeof movie.predicted_rating === 'number'
      ? h('span', { class: 'predicted' }, h('span', { 'aria-hidden': 'true' }, '★ '), `${movie.predicted_rating.toFixed(1)}`, h('span', { class: 'muted' }, ' predicted for you'))
      : null;
    const card = h('li', { class: `card${isNew ? ' is-new' : ''}`, 'data-movie-id': movie.movieId },
      poster(movie),
      h('div', { class: 'card-body' },
        h('h2', { class: 'card-title' }, movieLink(movie), h('span', { class: 'year' }, yearText(movie)),
          isNew ? h('span', { class: 'badge' }, 'New') : null),
        genreLine(movie),
        h('p', { class: 'card-meta' }, predicted),
        movie.reason && movie.reason.text ? h('p', { class: 'reason' }, movie.reason.text) : null),
      h('div', { class: 'card-extra' },
        overview,
        feedbackControls(movie, 'rec', (kind, value) => refreshRecs(index, actionText(kind, value, movie))),
        h('div', { class: 'card-foot' }, listButton(movie))));
    fillOverview(overview, movie.movieId);
    return card;
  }

  async function refreshRecs(index, what) {
    const list = $('recs');
    const note = $('recs-note');
    if (!list || !user) return;
    const before = new Set([...list.querySelectorAll('.card')].map((c) => Number(c.dataset.movieId)));
    note.textContent = `${what} Updating your recommendations…`;
    list.setAttribute('aria-busy', 'true');
    let data;
    try {
      data = await api(recsPath());
    } catch (err) {
      note.textContent = `${what} Your list could not be updated.`;
      showError(err, () => refreshRecs(index, what));
      return;
    } finally {
      list.removeAttribute('aria-busy');
    }
    if ($('recs') !== list) return; // the visitor went elsewhere meanwhile
    const items = data.recommendations || [];
    const after = new Set(items.map((m) => m.movieId));
    const fresh = new Set([...after].filter((id) => !before.has(id)));
    const gone = [...before].filter((id) => !after.has(id)).length;
    renderRecs(list, items, fresh);
    note.textContent = `${what} Your list is updated: ${gone} removed, ${fresh.size} new.`;
    const cards = list.querySelectorAll('.card .movie-link');
    if (cards.length) cards[Math.min(index, cards.length - 1)].focus();
  }

  async function viewMovie(view, rawId) {
    const id = Number(rawId);
    let meta;
    let similar;
    try {
      [meta, similar] = await Promise.all([api(`/movie/${id}/metadata`), api(`/movie/${id}/similar?n=${N_SIMILAR}`)]);
    } catch (err) {
      if (err.status !== 404) throw err;
      if (!view.current()) return;
      show(h('section', { class: 'empty-state' }, h('h1', {}, 'Movie not found'),
        h('p', {}, `There is no movie ${id} in the catalogue.`), h('a', { href: '#/' }, 'Back to your recommendations')));
      focusHeading();
      return;
    }
    if (!view.current()) return;
    const movie = { ...similar, movieId: id, poster_url: similar.poster_url || meta.poster_url };
    const facts = [
      ['Released', meta.release_date],
      ['Runtime', meta.runtime ? `${Math.round(meta.runtime)} min` : null],
      ['Language', meta.original_language],
      ['Series', meta.collection],
      ['Produced by', (meta.companies || []).slice(0, 3).join(', ')],
      ['TMDB rating', typeof meta.vote_average === 'number' && meta.vote_count ? `${meta.vote_average.toFixed(1)} / 10 (${meta.vote_count} votes)` : null],
    ].filter(([, v]) => v);
    const done = h('p', { class: 'update-note', role: 'status', 'aria-live': 'polite' });
    const mine = storage.get(KEY.actions, {})[id];
    const feedback = user
      ? feedbackControls(movie, 'movie', (kind, value) => {
        done.textContent = `${actionText(kind, value, movie)} Your recommendations take it into account now.`;
      })
      : h('p', { class: 'hint' }, h('a', { href: '#/welcome' }, 'Create your profile'), ' to like, dislike or rate movies.');
    const keywords = (meta.keywords || []).slice(0, 12);
    const tags = (meta.tags || []).slice(0, 12);
    const similarItems = similar.similar || [];
    show(
      h('article', { class: 'movie' },
        poster(movie, 'large'),
        h('div', { class: 'movie-body' },
          h('h1', {}, displayTitle(movie), h('span', { class: 'year' }, yearText(movie))),
          meta.tagline ? h('p', { class: 'tagline' }, meta.tagline) : null,
          genreLine(movie),
          facts.length ? h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))) : null,
          h('p', { class: 'overview full' }, meta.overview || 'No overview available.'),
          mine ? h('p', { class: 'muted' }, mine.kind === 'rate' ? `You rated it ${formatRating(mine.value)} ★.` : `You ${mine.kind}d it.`) : null,
          feedback,
          done,
          h('div', { class: 'card-foot' }, listButton(movie)),
          keywords.length ? h('p', { class: 'keywords' }, h('span', { class: 'muted' }, 'Keywords: '), keywords.join(', ')) : null,
          tags.length ? h('p', { class: 'keywords' }, h('span', { class: 'muted' }, 'Tags from MovieLens users: '), tags.join(', ')) : null)),
      h('section', { class: 'similar', 'aria-labelledby': 'similar-heading' },
        h('h2', { id: 'similar-heading' }, `Similar to ${displayTitle(movie)}`),
        similarItems.length
          ? h('ul', { class: 'cards compact', id: 'similar' }, similarItems.map((m) => smallCard(m)))
          : h('p', { class: 'muted' }, 'No similar movies are known for this one.')));
    focusHeading();
  }

  function smallCard(movie, extra) {
    return h('li', { class: 'card small', 'data-movie-id': movie.movieId },
      poster(movie, 'small'),
      h('div', { class: 'card-body' },
        h('h3', { class: 'card-title' }, movieLink(movie), h('span', { class: 'year' }, yearText(movie))),
        genreLine(movie),
        extra || null));
  }

  async function viewMyList(view) {
    if (!view.current()) return;
    const shared = storage.get(KEY.shared, []);
    const items = h('ol', { class: 'my-list', id: 'my-list' });
    const paintItems = () => {
      items.replaceChildren(...myList.map((m) => h('li', {},
        h('a', { href: `#/movie/${m.movieId}` }, m.title, m.year ? ` (${m.year})` : ''),
        h('button', {
          type: 'button',
          class: 'button ghost small',
          'aria-label': `Remove ${m.title} from my list`,
          onclick: () => {
            toggleList({ movieId: m.movieId, name: m.title });
            paintItems();
            announce(`${m.title} removed from your list.`);
            shareButton.focus();
          },
        }, 'Remove'))));
      empty.hidden = myList.length > 0;
      shareButton.disabled = !myList.length || !user;
    };
    const empty = h('p', { class: 'hint' }, 'Your list is empty. Add movies with the “+ My list” buttons on recommendations and movie pages.');
    const title = h('input', { id: 'list-title', type: 'text', maxlength: 100, required: true, value: 'My Movie Time picks' });
    const description = h('textarea', { id: 'list-description', maxlength: 1000, rows: 2 });
    const shareButton = h('button', { type: 'submit', class: 'button primary', id: 'share-list' }, 'Share this list');
    const formError = h('p', { class: 'form-error', role: 'alert' });
    const result = h('div', { class: 'share-result', id: 'share-result', hidden: true });
    const form = h('form', { class: 'share-form', id: 'share-form', novalidate: true },
      h('h2', {}, 'Share it'),
      user ? null : h('p', { class: 'hint' }, 'A shared list belongs to a profile: ', h('a', { href: '#/welcome' }, 'create yours'), ' first.'),
      h('label', { for: 'list-title' }, 'Title'), title,
      h('label', { for: 'list-description' }, 'Description (optional)'), description,
      h('div', { class: 'submit-row' }, shareButton, formError),
      result);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      formError.textContent = '';
      if (!title.value.trim()) {
        formError.textContent = 'Give the list a title.';
        title.focus();
        return;
      }
      const body = { title: title.value.trim(), movieIds: myList.map((m) => m.movieId) };
      if (description.value.trim()) body.description = description.value.trim();
      shareButton.disabled = true;
      try {
        const created = await api('/lists', { method: 'POST', body, auth: true });
        const link = `${location.origin}${location.pathname}#/lists/${created.slug}`;
        storage.set(KEY.shared, [{ slug: created.slug, title: body.title }, ...storage.get(KEY.shared, [])].slice(0, 20));
        const [row, linkInput] = linkRow('share-link', 'Share link', link, h('a', { href: link, class: 'button ghost', id: 'open-share' }, 'Open'));
        result.replaceChildren(h('p', {}, 'Your list is shared. Anyone with this link can see it:'), ...row);
        result.hidden = false;
        announce('Your list is shared. The link is ready to copy.');
        linkInput.focus();
        linkInput.select();
      } catch (err) {
        if (err.status === 400 || err.status === 404) formError.textContent = err.message;
        else showError(err, () => form.requestSubmit());
      } finally {
        shareButton.disabled = !myList.length || !user;
      }
    });
    show(
      h('h1', {}, 'My list'),
      empty,
      items,
      form,
      shared.length ? h('section', { class: 'shared-before' }, h('h2', {}, 'Lists you shared'),
        h('ul', {}, shared.map((s) => h('li', {}, h('a', { href: `#/lists/${s.slug}` }, s.title))))) : null);
    paintItems();
    focusHeading();
  }

  async function viewSharedList(view, slug) {
    if (!SLUG_RE.test(slug)) {
      show(h('section', { class: 'empty-state' }, h('h1', {}, 'This is not a list link'),
        h('p', {}, 'A shared list link ends with 22 letters, digits, “-” or “_”. Check that the whole link was copied.')));
      focusHeading();
      return;
    }
    let list;
    try {
      list = await api(`/lists/${slug}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      if (!view.current()) return;
      show(h('section', { class: 'empty-state' }, h('h1', {}, 'List not found'),
        h('p', {}, 'This list does not exist (any more): its owner may have deleted it.')));
      focusHeading();
      return;
    }
    if (!view.current()) return;
    const movies = list.movies || [];
    show(
      h('section', { class: 'view-head' },
        h('div', {},
          h('p', { class: 'eyebrow' }, 'Shared list'),
          h('h1', {}, list.title || 'A shared list'),
          list.description ? h('p', { class: 'list-description' }, list.description) : null,
          h('p', { class: 'muted' }, `${movies.length} ${movies.length === 1 ? 'movie' : 'movies'}`))),
      h('ul', { class: 'cards compact', id: 'shared-movies' }, movies.map((m) => (m.title
        ? smallCard(m, listButton(m))
        : h('li', { class: 'card small' }, h('div', { class: 'card-body' }, `Movie ${m.movieId} (no longer in the catalogue)`))))));
    focusHeading();
  }

  async function viewNotFound() {
    show(h('section', { class: 'empty-state' }, h('h1', {}, 'Nothing here'),
      h('p', {}, 'This address shows no page.'), h('a', { href: '#/' }, 'Go to Movie Time')));
    focusHeading();
  }

  // A read-only link with a copy button: [label, row, status] and the input.
  function linkRow(id, label, link, ...extra) {
    const input = h('input', { id, type: 'text', readonly: true, value: link });
    const status = h('span', { class: 'hint', role: 'status' });
    const copy = h('button', {
      type: 'button',
      class: 'button',
      onclick: async () => {
        input.select();
        try {
          await navigator.clipboard.writeText(link);
          status.textContent = 'Link copied.';
        } catch (_) {
          status.textContent = 'Select the link and copy it.';
        }
      },
    }, 'Copy link');
    return [[h('label', { for: id, class: 'visually-hidden' }, label), h('div', { class: 'share-link-row' }, input, copy, ...extra), status], input];
  }

  // --- watching together: links carry user ids, never tokens ---------------------------------------

  function togetherLink(ids) {
    return `${location.origin}${location.pathname}#/together/${ids.join(',')}`;
  }

  async function viewTogether(view, rawIds) {
    if (!user) {
      show(h('section', { class: 'empty-state' },
        h('h1', {}, 'Watch together'),
        h('p', {}, 'Someone invited you to choose a movie together. Create your profile first (a minute: a few genres and movies), then open the link again.'),
        h('a', { href: '#/welcome', class: 'button primary' }, 'Create my profile')));
      focusHeading();
      return;
    }
    if (!rawIds) {
      const [row] = linkRow('together-link', 'Your watch-together link', togetherLink([user.userId]));
      show(h('section', { class: 'view-head' }, h('div', {},
        h('h1', {}, 'Watch together'),
        h('p', { class: 'muted' }, 'Send this link to the people you watch with. When one of them opens it, you get a list for all of you: movies none of you has seen, from each one\'s taste, that nobody is likely to dislike. It carries your user number, never your token.'))),
        h('section', { class: 'together' }, ...row));
      focusHeading();
      return;
    }
    const ids = [...new Set([...rawIds.split(',').map(Number), user.userId])].slice(0, 8);
    const created = await api('/groups', { method: 'POST', body: { members: ids } });
    if (!view.current()) return;
    location.replace(`#/group/${created.slug}`);
  }

  async function viewGroup(view, slug) {
    if (!SLUG_RE.test(slug)) return viewNotFound();
    const variety = storage.get(KEY.variety, false) ? `&diversity=${VARIETY}` : '';
    const data = await api(`/groups/${slug}/recommendation?n=${N_RECS}${variety}`);
    if (!view.current()) return;
    const who = (id) => (user && id === user.userId ? 'you' : `viewer ${id}`);
    const list = h('ul', { class: 'cards', id: 'group-recs', 'aria-label': 'Movies for the group' });
    const note = h('p', { class: 'update-note', id: 'group-note', role: 'status', 'aria-live': 'polite' });
    const paint = (items) => list.replaceChildren(...items.map((movie) => h('li', { class: 'card', 'data-movie-id': movie.movieId },
      poster(movie),
      h('div', { class: 'card-body' },
        h('h2', { class: 'card-title' }, movieLink(movie), h('span', { class: 'year' }, yearText(movie))),
        genreLine(movie),
        h('p', { class: 'card-meta group-ratings' }, movie.members.map((m) => `${who(m.userId)} ★ ${m.predicted_rating.toFixed(1)}`).join(' · ')),
        h('p', { class: 'reason' }, `From ${movie.from.map((id) => (who(id) === 'you' ? 'your' : `${who(id)}'s`)).join(' and ')} list${movie.from.length > 1 ? 's' : ''}`)),
      user && data.members.includes(user.userId)
        ? h('div', { class: 'card-extra' }, feedbackControls(movie, 'group', (kind, value) => refresh(actionText(kind, value, movie))))
        : null)));
    // after a reaction: the group's list again (the reaction itself is saved already)
    const refresh = async (what) => {
      note.textContent = `${what} Updating the group's list…`;
      try {
        paint((await api(`/groups/${slug}/recommendation?n=${N_RECS}${variety}`)).recommendations);
        note.textContent = `${what} The group's list is updated.`;
      } catch (err) {
        note.textContent = `${what} The group's list could not be updated.`;
        showError(err, () => refresh(what));
      }
    };
    const [row] = linkRow('group-link', 'Link to add someone', togetherLink(data.members));
    show(
      h('section', { class: 'view-head' }, h('div', {},
        h('h1', {}, 'Watching together'),
        h('p', { class: 'muted', id: 'group-members' }, `For ${data.members.map(who).join(', ')}. Movies none of you has seen, that nobody is likely to dislike; react and the list follows.`))),
      h('section', { class: 'together' }, h('p', { class: 'hint' }, 'To add someone, send them this link: opening it starts a list with them too.'), ...row),
      note,
      list);
    paint(data.recommendations);
    focusHeading();
  }

  // --- the router ---------------------------------------------------------------------------------

  const ROUTES = [
    [/^\/?$/, viewHome, 'nav-recs'],
    [/^\/welcome$/, viewOnboarding, 'nav-recs'],
    [/^\/recommendations$/, viewRecommendations, 'nav-recs'],
    [/^\/movie\/([1-9][0-9]{0,17})$/, viewMovie, null],
    [/^\/my-list$/, viewMyList, 'nav-list'],
    [/^\/lists\/([^/]*)$/, viewSharedList, null],
    [/^\/together(?:\/([1-9][0-9]{0,17}(?:,[1-9][0-9]{0,17}){0,6}))?$/, viewTogether, null],
    [/^\/group\/([^/]*)$/, viewGroup, null],
  ];
  let generation = 0;

  async function render() {
    const path = location.hash.replace(/^#/, '');
    if (path && !path.startsWith('/')) return; // an in-page anchor
    const gen = ++generation;
    const view = { current: () => gen === generation };
    closeSearch(true);
    hideBanner();
    let handler = viewNotFound;
    let args = [];
    let nav = null;
    for (const [pattern, fn, navId] of ROUTES) {
      const match = pattern.exec(path);
      if (match) {
        handler = fn;
        args = match.slice(1);
        nav = navId;
        break;
      }
    }
    for (const id of ['nav-recs', 'nav-list']) {
      if (id === nav) $(id).setAttribute('aria-current', 'page');
      else $(id).removeAttribute('aria-current');
    }
    main.setAttribute('aria-busy', 'true');
    show(loading('Loading…'));
    try {
      await handler(view, ...args);
    } catch (err) {
      if (!view.current()) return;
      const message = err instanceof ApiError ? err.message : `Something went wrong on this page: ${err.message}`;
      show(h('section', { class: 'empty-state error-state', id: 'load-error' },
        h('h1', {}, 'This page could not be loaded'),
        h('p', { class: 'error-message', role: 'alert' }, message),
        h('button', { type: 'button', class: 'button primary', id: 'load-retry', onclick: render }, 'Try again')));
    } finally {
      if (view.current()) main.removeAttribute('aria-busy');
    }
  }

  $('skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener('hashchange', render);
  updateListCount();
  render();
})();
